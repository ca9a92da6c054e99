// Helpers shared by the ingest tests.
#pragma once

#include <zlib.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>

namespace outpost::ingest::test {

// $OUTPOST_SOURCE_DIR/src/ingest/testdata/<name> (set by ctest), else beside this file, so the
// binary also runs by hand.
inline std::string testdata(std::string_view name) {
  namespace fs = std::filesystem;
  const char* src = std::getenv("OUTPOST_SOURCE_DIR");
  const fs::path dir = src != nullptr ? fs::path(src) / "src/ingest/testdata"
                                      : fs::path(__FILE__).parent_path() / "testdata";
  return (dir / name).string();
}

// Seed 004's device packet, byte for byte as the seed shows it (4,946 bytes).
inline std::string seed_packet() {
  std::ifstream in(testdata("seed004_packet.json"), std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + testdata("seed004_packet.json"));
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// `text` as one gzip member (what a device's GZIPOutputStream writes).
inline std::string gzip(std::string_view text, int level = Z_DEFAULT_COMPRESSION) {
  z_stream zs{};
  if (deflateInit2(&zs, level, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK)
    throw std::runtime_error("deflateInit2");
  std::string out(deflateBound(&zs, text.size()), '\0');
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(text.data()));
  zs.avail_in = static_cast<uInt>(text.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  int rc = deflate(&zs, Z_FINISH);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  if (rc != Z_STREAM_END) throw std::runtime_error("deflate");
  return out;
}

}  // namespace outpost::ingest::test
