// AddressSource::system(): the real machine's addresses from getifaddrs().
#include <arpa/inet.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <bit>
#include <memory>

#include "sysinfo/sysinfo.hpp"

namespace outpost::sysinfo {

namespace {

int prefix_length(const unsigned char* mask, size_t len) {
  int bits = 0;
  for (size_t i = 0; i < len; ++i) bits += std::popcount(static_cast<unsigned>(mask[i]));
  return bits;
}

class GetifaddrsSource final : public AddressSource {
 public:
  std::vector<InterfaceAddress> addresses() const override {
    std::vector<InterfaceAddress> out;
    ifaddrs* list = nullptr;
    if (::getifaddrs(&list) != 0) return out;
    const std::unique_ptr<ifaddrs, decltype(&::freeifaddrs)> guard(list, &::freeifaddrs);
    for (const ifaddrs* a = list; a != nullptr; a = a->ifa_next) {
      if (a->ifa_addr == nullptr || a->ifa_name == nullptr) continue;
      InterfaceAddress entry;
      entry.interface = a->ifa_name;
      char text[INET6_ADDRSTRLEN] = {};
      if (a->ifa_addr->sa_family == AF_INET) {
        const auto* sin = reinterpret_cast<const sockaddr_in*>(a->ifa_addr);
        if (!::inet_ntop(AF_INET, &sin->sin_addr, text, sizeof text)) continue;
        entry.family = InterfaceAddress::Family::kIpv4;
        if (a->ifa_netmask != nullptr) {
          const auto* m = reinterpret_cast<const sockaddr_in*>(a->ifa_netmask);
          entry.prefix_length =
              prefix_length(reinterpret_cast<const unsigned char*>(&m->sin_addr), 4);
        }
      } else if (a->ifa_addr->sa_family == AF_INET6) {
        const auto* sin6 = reinterpret_cast<const sockaddr_in6*>(a->ifa_addr);
        if (!::inet_ntop(AF_INET6, &sin6->sin6_addr, text, sizeof text)) continue;
        entry.family = InterfaceAddress::Family::kIpv6;
        if (a->ifa_netmask != nullptr) {
          const auto* m = reinterpret_cast<const sockaddr_in6*>(a->ifa_netmask);
          entry.prefix_length = prefix_length(m->sin6_addr.s6_addr, 16);
        }
      } else {
        continue;  // AF_PACKET and friends: the MAC comes from sysfs instead
      }
      entry.address = text;
      out.push_back(std::move(entry));
    }
    return out;
  }
};

}  // namespace

const AddressSource& AddressSource::system() {
  static const GetifaddrsSource source;
  return source;
}

}  // namespace outpost::sysinfo
