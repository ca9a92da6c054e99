#include "web/web.hpp"

#include <gtest/gtest.h>
#include <zlib.h>

#include <set>
#include <string>

namespace outpost::web {
namespace {

// Inflates one complete gzip stream into *out; false if it is malformed or truncated.
bool gunzip(std::string_view in, std::string* out) {
  z_stream zs{};
  if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK) {  // 16: expect a gzip header
    return false;
  }
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  zs.avail_in = static_cast<uInt>(in.size());
  char buf[64 * 1024];
  int rc = Z_OK;
  while (rc == Z_OK) {
    zs.next_out = reinterpret_cast<Bytef*>(buf);
    zs.avail_out = sizeof buf;
    rc = inflate(&zs, Z_NO_FLUSH);
    out->append(buf, sizeof buf - zs.avail_out);
  }
  inflateEnd(&zs);
  return rc == Z_STREAM_END && zs.avail_in == 0;
}

TEST(Web, EveryAssetIsFoundUnderItsPathAndNonEmpty) {
  ASSERT_FALSE(assets().empty());
  std::set<std::string_view> paths;
  for (const Asset& a : assets()) {
    SCOPED_TRACE(a.path);
    EXPECT_TRUE(paths.insert(a.path).second) << "duplicate path";
    EXPECT_TRUE(a.path.starts_with("/docs"));
    EXPECT_EQ(find_asset(a.path), &a);
    EXPECT_FALSE(a.body.empty());
    EXPECT_FALSE(a.content_type.empty());
  }
}

TEST(Web, ServesThePageAndWhatItLoads) {
  for (std::string_view path :
       {"/docs", "/docs/docs.js", "/docs/docs.css", "/docs/swagger-ui.css",
        "/docs/swagger-ui-bundle.js", "/docs/favicon-32x32.png", "/docs/LICENSE", "/docs/NOTICE",
        "/docs/swagger-ui-bundle.js.LICENSE.txt"}) {
    EXPECT_NE(find_asset(path), nullptr) << path;
  }
  EXPECT_EQ(find_asset("/docs")->content_type, "text/html; charset=utf-8");
  EXPECT_EQ(find_asset("/docs/swagger-ui-bundle.js")->content_type,
            "text/javascript; charset=utf-8");
  EXPECT_EQ(find_asset("/docs/swagger-ui.css")->content_type, "text/css; charset=utf-8");
  EXPECT_EQ(find_asset("/docs/favicon-32x32.png")->content_type, "image/png");
  EXPECT_NE(find_asset("/docs/swagger-ui-bundle.js")->body.find("SwaggerUIBundle"),
            std::string_view::npos);
  EXPECT_NE(find_asset("/docs/LICENSE")->body.find("Apache License"), std::string_view::npos);
}

TEST(Web, DocsAliasesFindTheIndexPage) {
  const Asset* index = find_asset("/docs");
  ASSERT_NE(index, nullptr);
  EXPECT_EQ(find_asset("/docs/"), index);
  EXPECT_EQ(find_asset("/docs/index.html"), index);
  EXPECT_NE(index->body.find("<title>Outpost API</title>"), std::string_view::npos);
}

TEST(Web, UnknownPathsAreNotFound) {
  EXPECT_EQ(find_asset(""), nullptr);
  EXPECT_EQ(find_asset("/"), nullptr);
  EXPECT_EQ(find_asset("/docs/nope.js"), nullptr);
  EXPECT_EQ(find_asset("/docs/swagger-ui-bundle.js.map"), nullptr);
  EXPECT_EQ(find_asset("/docs//"), nullptr);
  EXPECT_EQ(find_asset("/DOCS"), nullptr);
}

TEST(Web, GzipBodiesInflateToTheBody) {
  int compressed = 0;
  for (const Asset& a : assets()) {
    SCOPED_TRACE(a.path);
    if (a.gzip_body.empty()) {
      EXPECT_TRUE(a.gzip_etag.empty());
      continue;
    }
    ++compressed;
    EXPECT_LT(a.gzip_body.size(), a.body.size());
    std::string inflated;
    ASSERT_TRUE(gunzip(a.gzip_body, &inflated));
    EXPECT_TRUE(inflated == a.body);  // not EXPECT_EQ: no megabyte diffs on failure
  }
  // The big text assets must be compressed; the PNG is not worth it.
  EXPECT_FALSE(find_asset("/docs/swagger-ui-bundle.js")->gzip_body.empty());
  EXPECT_FALSE(find_asset("/docs/swagger-ui.css")->gzip_body.empty());
  EXPECT_FALSE(find_asset("/docs")->gzip_body.empty());
  EXPECT_GE(compressed, 5);
}

TEST(Web, EtagsAreQuotedStrongAndDistinct) {
  std::set<std::string_view> seen;
  auto check = [&seen](std::string_view etag) {
    SCOPED_TRACE(etag);
    ASSERT_GE(etag.size(), 3u);
    EXPECT_EQ(etag.front(), '"');  // strong: no W/ prefix
    EXPECT_EQ(etag.back(), '"');
    EXPECT_EQ(etag.substr(1, etag.size() - 2).find('"'), std::string_view::npos);
    EXPECT_TRUE(seen.insert(etag).second) << "duplicate ETag";
  };
  for (const Asset& a : assets()) {
    SCOPED_TRACE(a.path);
    check(a.etag);
    if (!a.gzip_body.empty()) {
      check(a.gzip_etag);
    }
  }
}

// Every src/href in the page must stay on this server: the device may have no internet and
// a strict Content-Security-Policy ("default-src 'self'") must not block anything.
TEST(Web, IndexPageUsesOnlyLocalUrls) {
  std::string_view html = find_asset("/docs")->body;
  EXPECT_EQ(html.find("http://"), std::string_view::npos);
  EXPECT_EQ(html.find("https://"), std::string_view::npos);
  EXPECT_EQ(html.find("//cdn"), std::string_view::npos);
  EXPECT_EQ(html.find("<style"), std::string_view::npos);
  EXPECT_EQ(html.find(" style="), std::string_view::npos);

  int urls = 0;
  for (std::string_view attr : {"src=\"", "href=\""}) {
    for (size_t pos = html.find(attr); pos != std::string_view::npos;
         pos = html.find(attr, pos + 1)) {
      size_t start = pos + attr.size();
      std::string_view url = html.substr(start, html.find('"', start) - start);
      SCOPED_TRACE(url);
      ++urls;
      ASSERT_TRUE(url.starts_with("/")) << "relative or absolute URL to elsewhere";
      EXPECT_FALSE(url.starts_with("//")) << "protocol-relative URL to another host";
      if (url != "/openapi.json") {
        EXPECT_NE(find_asset(url), nullptr) << "the page loads an asset we do not serve";
      }
    }
  }
  EXPECT_GE(urls, 4);

  // No inline script: every <script> has a src and an empty body.
  for (size_t pos = html.find("<script"); pos != std::string_view::npos;
       pos = html.find("<script", pos + 1)) {
    size_t end = html.find('>', pos);
    std::string_view tag = html.substr(pos, end - pos);
    EXPECT_NE(tag.find("src=\"/docs/"), std::string_view::npos) << tag;
    EXPECT_EQ(html.substr(end + 1, 9), "</script>") << tag;
  }
}

TEST(Web, InitScriptPointsSwaggerUiAtTheGeneratedDocument) {
  std::string_view js = find_asset("/docs/docs.js")->body;
  EXPECT_NE(js.find("'/openapi.json'"), std::string_view::npos);
  EXPECT_NE(js.find("persistAuthorization: true"), std::string_view::npos);
  EXPECT_NE(js.find("validatorUrl: null"), std::string_view::npos);
  EXPECT_EQ(js.find("http://"), std::string_view::npos);
  EXPECT_EQ(js.find("https://"), std::string_view::npos);
}

}  // namespace
}  // namespace outpost::web
