#include "web/web.hpp"

namespace outpost::web {

const Asset* find_asset(std::string_view path) {
  if (path == "/docs/" || path == "/docs/index.html") {
    path = "/docs";
  }
  // A handful of assets: a linear scan beats any index here.
  for (const Asset& asset : assets()) {
    if (asset.path == path) {
      return &asset;
    }
  }
  return nullptr;
}

}  // namespace outpost::web
