// Web assets embedded in the binary: the interactive API documentation page at /docs
// (Swagger UI from npm's swagger-ui-dist, built into the library at build time by
// web/CMakeLists.txt) and its licence files. Serving needs no files on disk and no internet.
//
// All data is immutable, lives for the whole program (static storage) and may be read from
// any thread without locking.
#pragma once

#include <span>
#include <string_view>

namespace outpost::web {

struct Asset {
  std::string_view path;          // URL path, e.g. "/docs", "/docs/swagger-ui-bundle.js"
  std::string_view content_type;  // e.g. "text/html; charset=utf-8"; text is always UTF-8
  std::string_view body;          // raw bytes, never empty
  std::string_view gzip_body;     // the same, gzip-compressed; empty if it would not save 10%
  std::string_view etag;          // strong ETag of `body`, quoted: "\"3f2a…\""
  std::string_view gzip_etag;     // strong ETag of `gzip_body` (a different representation
                                  // needs a different strong validator, RFC 9110 8.8.3);
                                  // empty when gzip_body is empty
};

// The asset served at `path` (a URL path without query string), or nullptr if none.
// "/docs", "/docs/" and "/docs/index.html" all find the page itself, whose `path` is "/docs".
const Asset* find_asset(std::string_view path);

// Every embedded asset once, under its canonical path, in a fixed order.
std::span<const Asset> assets();

}  // namespace outpost::web
