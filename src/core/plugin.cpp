#include "core/plugin.hpp"

#include <dlfcn.h>
#include <fmt/format.h>

#include <system_error>

namespace outpost::core {

namespace fs = std::filesystem;

std::vector<fs::path> plugin_candidates(std::string_view file) {
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (ec) return {};
  const fs::path dir = exe.parent_path();
  return {dir / file, (dir / ".." / "lib" / "outpost" / file).lexically_normal()};
}

Result<fs::path> find_plugin(std::string_view file, const std::string& configured,
                             std::string_view what, std::string_view remedy) {
  if (!configured.empty()) {
    std::error_code ec;
    fs::path path = fs::absolute(configured, ec);
    return ec ? fs::path(configured) : path;
  }
  const auto candidates = plugin_candidates(file);
  for (const auto& p : candidates) {
    std::error_code ec;
    if (fs::exists(p, ec)) return p;
  }
  std::vector<std::string> tried;
  for (const auto& p : candidates) tried.push_back(p.string());
  const std::string where = tried.empty()
                                ? "/proc/self/exe is unreadable"
                                : "looked for " + fmt::format("{}", fmt::join(tried, " and "));
  return Status::unavailable(
      fmt::format("the {} {} is not installed ({}); {}", what, file, where, remedy));
}

Result<void*> open_plugin(const fs::path& path, const char* symbol, std::string_view what) {
  void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
  if (handle == nullptr) {
    const char* err = dlerror();
    std::string why = err ? err : "unknown error";
    // dlerror() usually starts with the path again.
    if (why.rfind(path.string() + ": ", 0) == 0) why.erase(0, path.string().size() + 2);
    return Status::unavailable(fmt::format("cannot load the {} {}: {}", what, path.string(), why));
  }
  void* factory = dlsym(handle, symbol);
  if (factory == nullptr) {
    return Status::unavailable(fmt::format(
        "{} is not a {} for this version of outpost (it has no {})", path.string(), what, symbol));
  }
  return factory;
}

Result<LoadedPlugin> load_plugin(const PluginSpec& spec) {
  auto path = find_plugin(spec.file, spec.configured, spec.what, spec.remedy);
  if (!path) return path.status();
  auto factory = open_plugin(*path, spec.factory, spec.what);
  if (!factory) return factory.status();
  return LoadedPlugin{std::move(*path), *factory};
}

Status plugin_mismatch(const PluginSpec& spec, const fs::path& path, uint64_t theirs) {
  return Status::unavailable(
      fmt::format("the {} {} was built from another version of outpost (fingerprint {:016x}, this "
                  "binary {:016x}); install the plugin built with this binary",
                  spec.what, path.string(), theirs, spec.fingerprint));
}

}  // namespace outpost::core
