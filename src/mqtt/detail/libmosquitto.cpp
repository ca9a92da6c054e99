// Forwarders for the mosquitto_* functions this module calls (see libmosquitto.hpp).
#include "mqtt/detail/libmosquitto.hpp"

#include <dlfcn.h>
#include <fmt/format.h>
#include <mosquitto.h>

#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>

namespace outpost::mqtt::detail {

namespace {

constexpr const char* kSoname = "libmosquitto.so.1";

// X(return type, name, (parameters), (arguments)) for every forwarded function.
#define OUTPOST_MOSQUITTO_FUNCTIONS(X)                                                                      \
  X(int, mosquitto_lib_init, (void), ())                                                                    \
  X(int, mosquitto_lib_cleanup, (void), ())                                                                 \
  X(struct mosquitto*, mosquitto_new, (const char* id, bool clean_session, void* obj), (id, clean_session, obj)) \
  X(void, mosquitto_destroy, (struct mosquitto * mosq), (mosq))                                             \
  X(int, mosquitto_threaded_set, (struct mosquitto * mosq, bool threaded), (mosq, threaded))                \
  X(int, mosquitto_int_option, (struct mosquitto * mosq, enum mosq_opt_t option, int value), (mosq, option, value)) \
  X(int, mosquitto_username_pw_set, (struct mosquitto * mosq, const char* username, const char* password),  \
    (mosq, username, password))                                                                              \
  X(int, mosquitto_tls_set,                                                                                 \
    (struct mosquitto * mosq, const char* cafile, const char* capath, const char* certfile,                 \
     const char* keyfile, int (*pw_callback)(char* buf, int size, int rwflag, void* userdata)),             \
    (mosq, cafile, capath, certfile, keyfile, pw_callback))                                                 \
  X(int, mosquitto_connect_async, (struct mosquitto * mosq, const char* host, int port, int keepalive),     \
    (mosq, host, port, keepalive))                                                                           \
  X(int, mosquitto_disconnect, (struct mosquitto * mosq), (mosq))                                           \
  X(int, mosquitto_publish,                                                                                 \
    (struct mosquitto * mosq, int* mid, const char* topic, int payloadlen, const void* payload, int qos,   \
     bool retain),                                                                                          \
    (mosq, mid, topic, payloadlen, payload, qos, retain))                                                   \
  X(int, mosquitto_subscribe, (struct mosquitto * mosq, int* mid, const char* sub, int qos), (mosq, mid, sub, qos)) \
  X(int, mosquitto_socket, (struct mosquitto * mosq), (mosq))                                               \
  X(bool, mosquitto_want_write, (struct mosquitto * mosq), (mosq))                                          \
  X(int, mosquitto_loop_read, (struct mosquitto * mosq, int max_packets), (mosq, max_packets))              \
  X(int, mosquitto_loop_write, (struct mosquitto * mosq, int max_packets), (mosq, max_packets))             \
  X(int, mosquitto_loop_misc, (struct mosquitto * mosq), (mosq))                                            \
  X(void, mosquitto_connect_callback_set, (struct mosquitto * mosq, void (*on_connect)(struct mosquitto*, void*, int)), \
    (mosq, on_connect))                                                                                      \
  X(void, mosquitto_disconnect_callback_set,                                                                \
    (struct mosquitto * mosq, void (*on_disconnect)(struct mosquitto*, void*, int)), (mosq, on_disconnect)) \
  X(void, mosquitto_message_callback_set,                                                                   \
    (struct mosquitto * mosq, void (*on_message)(struct mosquitto*, void*, const struct mosquitto_message*)), \
    (mosq, on_message))                                                                                      \
  X(void, mosquitto_log_callback_set,                                                                       \
    (struct mosquitto * mosq, void (*on_log)(struct mosquitto*, void*, int, const char*)), (mosq, on_log))  \
  X(const char*, mosquitto_strerror, (int mosq_errno), (mosq_errno))                                        \
  X(const char*, mosquitto_connack_string, (int connack_code), (connack_code))                              \
  X(int, mosquitto_will_set,                                                                                \
    (struct mosquitto * mosq, const char* topic, int payloadlen, const void* payload, int qos, bool retain), \
    (mosq, topic, payloadlen, payload, qos, retain))                                                        \
  X(void, mosquitto_publish_callback_set,                                                                   \
    (struct mosquitto * mosq, void (*on_publish)(struct mosquitto*, void*, int)), (mosq, on_publish))       \
  X(int, mosquitto_pub_topic_check2, (const char* topic, size_t topiclen), (topic, topiclen))               \
  X(int, mosquitto_validate_utf8, (const char* str, int len), (str, len))

// The resolved functions, each typed from its declaration in <mosquitto.h>.
struct Table {
#define OUTPOST_MOSQUITTO_FIELD(ret, name, params, args) decltype(&::name) name = nullptr;
  OUTPOST_MOSQUITTO_FUNCTIONS(OUTPOST_MOSQUITTO_FIELD)
#undef OUTPOST_MOSQUITTO_FIELD
};

Table table;

core::Status load_once() {
  // RTLD_NODELETE and no dlclose: callbacks into us and the library's own threads (none here,
  // but libmosquitto keeps OpenSSL state) must never outlive its code.
  void* handle = dlopen(kSoname, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
  if (handle == nullptr) {
    const char* err = dlerror();
    return core::Status::unavailable(fmt::format("mqtt: cannot load {} (Debian package libmosquitto1): {}", kSoname,
                                                 err ? err : "unknown error"));
  }
#define OUTPOST_MOSQUITTO_RESOLVE(ret, name, params, args)                                             \
  table.name = reinterpret_cast<decltype(&::name)>(dlsym(handle, #name));                            \
  if (table.name == nullptr)                                                                         \
    return core::Status::unavailable(fmt::format("mqtt: {} has no {}; libmosquitto 2.0 or newer is needed", \
                                                 kSoname, #name));
  OUTPOST_MOSQUITTO_FUNCTIONS(OUTPOST_MOSQUITTO_RESOLVE)
#undef OUTPOST_MOSQUITTO_RESOLVE
  return core::Status::ok();
}

}  // namespace

core::Status load_libmosquitto() {
  static std::once_flag once;
  static core::Status status;
  std::call_once(once, [] { status = load_once(); });
  return status;
}

namespace {

// A forwarder called before load_libmosquitto() (a topic check, say) loads the library itself;
// only a library that cannot be loaded at all ends the process, with the reason.
void ensure_loaded(const char* name) {
  if (auto s = load_libmosquitto(); !s) {
    std::fprintf(stderr, "outpost: %s: %s\n", name, s.message().c_str());
    std::abort();
  }
}

}  // namespace

}  // namespace outpost::mqtt::detail

// The forwarders themselves, with the names and C linkage of <mosquitto.h>'s declarations.
#define OUTPOST_MOSQUITTO_FORWARD(ret, name, params, args)                          \
  extern "C" ret name params {                                                     \
    if (outpost::mqtt::detail::table.name == nullptr) outpost::mqtt::detail::ensure_loaded(#name); \
    return outpost::mqtt::detail::table.name args;                                 \
  }
OUTPOST_MOSQUITTO_FUNCTIONS(OUTPOST_MOSQUITTO_FORWARD)
#undef OUTPOST_MOSQUITTO_FORWARD
