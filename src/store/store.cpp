#include "store/store.hpp"

#include <future>

#include "store/detail/writer_thread.hpp"

namespace outpost::store {

namespace detail {

namespace {
thread_local bool tl_writer_thread = false;
}  // namespace

bool on_writer_thread() { return tl_writer_thread; }
void mark_writer_thread() { tl_writer_thread = true; }

}  // namespace detail

core::Status Store::append_sync(std::vector<core::Reading> readings) {
  if (detail::on_writer_thread()) {
    return core::Status::internal("append_sync called on the store's writer thread");
  }
  std::promise<core::Status> done;
  auto result = done.get_future();
  append(std::move(readings), [&done](core::Status s) { done.set_value(std::move(s)); });
  return result.get();
}

core::Result<int64_t> Store::append_event_sync(core::Event e) {
  if (detail::on_writer_thread()) {
    return core::Status::internal("append_event_sync called on the store's writer thread");
  }
  std::promise<core::Result<int64_t>> done;
  auto result = done.get_future();
  append_event(std::move(e), [&done](core::Result<int64_t> id) { done.set_value(std::move(id)); });
  return result.get();
}

}  // namespace outpost::store
