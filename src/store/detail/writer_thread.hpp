// Which thread is a store writer thread. Calls that wait for a writer (append_sync, flush, key
// writes, close) check it and fail instead of deadlocking when made from a `done` callback.
#pragma once

namespace outpost::store::detail {

// True on a thread that called mark_writer_thread() (any Store's writer).
bool on_writer_thread();
// Called once by a writer thread for itself.
void mark_writer_thread();

}  // namespace outpost::store::detail
