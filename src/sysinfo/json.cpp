// The RaspAP wire shapes of GET /system and GET /networking.
#include "sysinfo/sysinfo.hpp"

namespace outpost::sysinfo {

nlohmann::ordered_json to_json(const SystemFacts& f) {
  nlohmann::ordered_json j = nlohmann::ordered_json::object();
  j["hostname"] = f.hostname;
  j["uptime"] = f.uptime;
  j["systime"] = f.systime;
  j["usedMemory"] = f.used_memory;
  j["usedDisk"] = f.used_disk;
  j["processorCount"] = f.processor_count;
  j["LoadAvg1Min"] = f.load_avg_1min;
  j["systemLoadPercentage"] = f.system_load_percentage;
  // null rather than RaspAP's 0 for "no sensor": 0 °C is a reading a client must be able to trust.
  j["systemTemperature"] =
      f.system_temperature ? nlohmann::ordered_json(*f.system_temperature) : nlohmann::ordered_json(nullptr);
  j["hostapdStatus"] = f.hostapd_status;
  j["operatingSystem"] = f.operating_system;
  j["kernelVersion"] = f.kernel_version;
  j["rpiRevision"] = f.rpi_revision;
  return j;
}

nlohmann::ordered_json to_json(const std::vector<InterfaceFacts>& interfaces) {
  const auto or_null = [](const std::optional<std::string>& v) {
    return v ? nlohmann::ordered_json(*v) : nlohmann::ordered_json(nullptr);
  };
  nlohmann::ordered_json addresses = nlohmann::ordered_json::object();
  nlohmann::ordered_json throughput = nlohmann::ordered_json::object();
  for (const auto& i : interfaces) {
    addresses[i.name] = {{"IP_address", or_null(i.ipv4)},
                         {"Netmask", or_null(i.netmask)},
                         {"MAC_address", or_null(i.mac)},
                         {"IPv6_addresses", i.ipv6}};
    // The true counters. RaspAP's networking.py indexes psutil's tuple wrongly (its "RX_bytes"
    // is bytes sent, its "TX_bytes" is errors in); clients want what the names say.
    throughput[i.name] = {{"RX_packets", i.rx_packets},
                          {"RX_bytes", i.rx_bytes},
                          {"TX_packets", i.tx_packets},
                          {"TX_bytes", i.tx_bytes}};
  }
  return {{"interfaces", std::move(addresses)}, {"throughput", std::move(throughput)}};
}

bool raspap_hides(std::string_view interface_name) {
  return interface_name.substr(0, 2) == "lo" || interface_name.substr(0, 6) == "docker";
}

}  // namespace outpost::sysinfo
