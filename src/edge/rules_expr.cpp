// The rule expression language: a hand-written lexer and recursive-descent parser into a flat
// node array, and its evaluator. Bounded in length, node count and depth, so a hostile
// expression costs at most a few microseconds and never overflows the stack.
#include <fmt/format.h>

#include <charconv>
#include <cmath>
#include <limits>

#include "edge/rules.hpp"

namespace outpost::edge {

namespace {

constexpr size_t kMaxLength = 1024;
constexpr size_t kMaxNodes = 256;
constexpr int kMaxDepth = 32;
constexpr double kUnknown = std::numeric_limits<double>::quiet_NaN();

bool name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '.' ||
         c == ':' || c == '#';
}
bool digit(char c) { return c >= '0' && c <= '9'; }

struct Token {
  enum Kind { kEnd, kNum, kRef, kOp, kLParen, kRParen } kind = kEnd;
  size_t pos = 0;
  std::string_view text;  // the operator, or the reference's text (unquoted)
  double num = 0;
};

}  // namespace

class ExprParser {
 public:
  ExprParser(std::string_view text, const std::string& board, Expression& out, RuleError& err)
      : s_(text), board_(board), out_(out), err_(err) {}

  bool parse() {
    if (s_.size() > kMaxLength) return fail(kMaxLength, fmt::format("longer than {} characters", kMaxLength));
    if (!next()) return false;
    if (tok_.kind == Token::kEnd) return fail(0, "empty expression");
    int32_t root = 0;
    if (!parse_or(root, 0)) return false;
    if (tok_.kind != Token::kEnd) return fail(tok_.pos, fmt::format("unexpected '{}'", tok_.text));
    out_.root_ = root;
    return true;
  }

 private:
  bool fail(size_t pos, std::string message) {
    err_.field = "expr";
    err_.message = fmt::format("{} at position {}", message, pos);
    err_.position = pos;
    return false;
  }

  // Reads the next token into tok_.
  bool next() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r')) ++i_;
    tok_ = Token{};
    tok_.pos = i_;
    if (i_ >= s_.size()) return true;
    char c = s_[i_];
    if (c == '(' || c == ')') {
      tok_.kind = c == '(' ? Token::kLParen : Token::kRParen;
      tok_.text = s_.substr(i_++, 1);
      return true;
    }
    if (c == '\'') {
      size_t close = s_.find('\'', i_ + 1);
      if (close == std::string_view::npos) return fail(i_, "unterminated quoted sensor reference");
      tok_.kind = Token::kRef;
      tok_.text = s_.substr(i_ + 1, close - i_ - 1);
      i_ = close + 1;
      if (tok_.text.empty()) return fail(tok_.pos, "empty quoted sensor reference");
      return true;
    }
    if (name_char(c)) return word();
    static constexpr std::string_view kTwo[] = {"&&", "||", "<=", ">=", "==", "!="};
    for (auto op : kTwo) {
      if (s_.substr(i_, 2) == op) {
        tok_.kind = Token::kOp;
        tok_.text = s_.substr(i_, 2);
        i_ += 2;
        return true;
      }
    }
    if (c == '+' || c == '-' || c == '*' || c == '/' || c == '<' || c == '>' || c == '!') {
      tok_.kind = Token::kOp;
      tok_.text = s_.substr(i_++, 1);
      return true;
    }
    if (c == '&' || c == '|') return fail(i_, fmt::format("'{}' must be doubled ('{}{}')", c, c, c));
    if (c == '=') return fail(i_, "'=' is not a comparison; use '=='");
    return fail(i_, fmt::format("unexpected character '{}'", c));
  }

  // A number, or a reference (name, or name/name). A word that starts like a number is a number
  // when the number ends where the word does ("30", "2.5e3"); otherwise it must be a device/
  // sensor pair ("440cd2d8c18d7d3a/light").
  bool word() {
    size_t start = i_;
    if (digit(s_[i_]) || s_[i_] == '.') {
      double v = 0;
      auto r = std::from_chars(s_.data() + i_, s_.data() + s_.size(), v, std::chars_format::general);
      if (r.ec == std::errc::result_out_of_range) return fail(start, "number out of range");
      size_t end = r.ec == std::errc() ? static_cast<size_t>(r.ptr - s_.data()) : i_;
      if (end > i_ && (end == s_.size() || (!name_char(s_[end]) && s_[end] != '/' && s_[end] != '\''))) {
        if (!std::isfinite(v)) return fail(start, "number out of range");
        tok_.kind = Token::kNum;
        tok_.num = v;
        tok_.text = s_.substr(start, end - start);
        i_ = end;
        return true;
      }
    }
    while (i_ < s_.size() && name_char(s_[i_])) ++i_;
    // "a/b" with nothing between is one reference; "a / b" is a division.
    if (i_ + 1 < s_.size() && s_[i_] == '/' && name_char(s_[i_ + 1])) {
      ++i_;
      while (i_ < s_.size() && name_char(s_[i_])) ++i_;
    } else if (digit(s_[start]) || s_[start] == '.') {
      return fail(start, fmt::format("'{}' is neither a number nor a device/sensor reference",
                                     s_.substr(start, i_ - start)));
    }
    tok_.kind = Token::kRef;
    tok_.text = s_.substr(start, i_ - start);
    return true;
  }

  bool add(Expression::Node n, int32_t& out, size_t pos) {
    if (out_.nodes_.size() >= kMaxNodes) return fail(pos, fmt::format("more than {} terms", kMaxNodes));
    out_.nodes_.push_back(n);
    out = static_cast<int32_t>(out_.nodes_.size() - 1);
    return true;
  }
  bool binary(Expression::Node::Op op, int32_t a, int32_t b, int32_t& out, size_t pos) {
    return add({op, a, b, 0}, out, pos);
  }
  bool is_op(std::string_view op) const { return tok_.kind == Token::kOp && tok_.text == op; }

  bool parse_or(int32_t& out, int depth) {
    if (!parse_and(out, depth)) return false;
    while (is_op("||")) {
      size_t pos = tok_.pos;
      int32_t rhs = 0;
      if (!next() || !parse_and(rhs, depth)) return false;
      if (!binary(Expression::Node::kOr, out, rhs, out, pos)) return false;
    }
    return true;
  }
  bool parse_and(int32_t& out, int depth) {
    if (!parse_equality(out, depth)) return false;
    while (is_op("&&")) {
      size_t pos = tok_.pos;
      int32_t rhs = 0;
      if (!next() || !parse_equality(rhs, depth)) return false;
      if (!binary(Expression::Node::kAnd, out, rhs, out, pos)) return false;
    }
    return true;
  }
  bool parse_equality(int32_t& out, int depth) {
    if (!parse_comparison(out, depth)) return false;
    if (is_op("==") || is_op("!=")) {
      auto op = tok_.text == "==" ? Expression::Node::kEq : Expression::Node::kNe;
      size_t pos = tok_.pos;
      int32_t rhs = 0;
      if (!next() || !parse_comparison(rhs, depth)) return false;
      if (!binary(op, out, rhs, out, pos)) return false;
      if (is_op("==") || is_op("!="))
        return fail(tok_.pos, "comparisons do not chain; join them with && or use parentheses");
    }
    return true;
  }
  bool parse_comparison(int32_t& out, int depth) {
    if (!parse_additive(out, depth)) return false;
    auto cmp = [&]() -> std::optional<Expression::Node::Op> {
      if (is_op("<")) return Expression::Node::kLt;
      if (is_op("<=")) return Expression::Node::kLe;
      if (is_op(">")) return Expression::Node::kGt;
      if (is_op(">=")) return Expression::Node::kGe;
      return std::nullopt;
    };
    if (auto op = cmp()) {
      size_t pos = tok_.pos;
      int32_t rhs = 0;
      if (!next() || !parse_additive(rhs, depth)) return false;
      if (!binary(*op, out, rhs, out, pos)) return false;
      if (cmp()) return fail(tok_.pos, "comparisons do not chain; write 'a < b && b < c'");
    }
    return true;
  }
  bool parse_additive(int32_t& out, int depth) {
    if (!parse_multiplicative(out, depth)) return false;
    while (is_op("+") || is_op("-")) {
      auto op = tok_.text == "+" ? Expression::Node::kAdd : Expression::Node::kSub;
      size_t pos = tok_.pos;
      int32_t rhs = 0;
      if (!next() || !parse_multiplicative(rhs, depth)) return false;
      if (!binary(op, out, rhs, out, pos)) return false;
    }
    return true;
  }
  bool parse_multiplicative(int32_t& out, int depth) {
    if (!parse_unary(out, depth)) return false;
    while (is_op("*") || is_op("/")) {
      auto op = tok_.text == "*" ? Expression::Node::kMul : Expression::Node::kDiv;
      size_t pos = tok_.pos;
      int32_t rhs = 0;
      if (!next() || !parse_unary(rhs, depth)) return false;
      if (!binary(op, out, rhs, out, pos)) return false;
    }
    return true;
  }
  bool parse_unary(int32_t& out, int depth) {
    if (depth > kMaxDepth) return fail(tok_.pos, fmt::format("nested more than {} deep", kMaxDepth));
    if (is_op("-") || is_op("!")) {
      auto op = tok_.text == "-" ? Expression::Node::kNeg : Expression::Node::kNot;
      size_t pos = tok_.pos;
      int32_t operand = 0;
      if (!next() || !parse_unary(operand, depth + 1)) return false;
      return add({op, operand, -1, 0}, out, pos);
    }
    return parse_primary(out, depth);
  }
  bool parse_primary(int32_t& out, int depth) {
    size_t pos = tok_.pos;
    switch (tok_.kind) {
      case Token::kNum: {
        double v = tok_.num;
        return add({Expression::Node::kNum, -1, -1, v}, out, pos) && next();
      }
      case Token::kRef: {
        SensorRef ref;
        ref.position = pos;
        size_t slash = tok_.text.find('/');
        if (slash == std::string_view::npos) {
          ref.device = board_;
          ref.sensor = std::string(tok_.text);
        } else {
          ref.device = std::string(tok_.text.substr(0, slash));
          ref.sensor = std::string(tok_.text.substr(slash + 1));
          if (ref.device.empty() || ref.sensor.empty() || ref.sensor.find('/') != std::string::npos)
            return fail(pos, fmt::format("'{}' is not device/sensor", tok_.text));
        }
        size_t slot = 0;
        while (slot < out_.refs_.size() && !(out_.refs_[slot] == ref)) ++slot;
        if (slot == out_.refs_.size()) out_.refs_.push_back(std::move(ref));
        return add({Expression::Node::kRef, -1, -1, static_cast<double>(slot)}, out, pos) && next();
      }
      case Token::kLParen: {
        if (!next() || !parse_or_nested(out, depth + 1)) return false;
        if (tok_.kind != Token::kRParen)
          return fail(tok_.pos, fmt::format("expected ')' to close the '(' at position {}", pos));
        return next();
      }
      case Token::kEnd: return fail(pos, "unexpected end of expression");
      default: return fail(pos, fmt::format("unexpected '{}'", tok_.text));
    }
  }
  bool parse_or_nested(int32_t& out, int depth) {
    if (depth > kMaxDepth) return fail(tok_.pos, fmt::format("nested more than {} deep", kMaxDepth));
    return parse_or(out, depth);
  }

  std::string_view s_;
  const std::string& board_;
  Expression& out_;
  RuleError& err_;
  size_t i_ = 0;
  Token tok_;
};

std::optional<Expression> Expression::parse(std::string_view text, const std::string& board, RuleError& err) {
  Expression e;
  e.text_ = std::string(text);
  ExprParser p(e.text_, board, e, err);
  if (!p.parse()) return std::nullopt;
  return e;
}

double Expression::eval(const std::vector<double>& values) const { return eval_node(root_, values); }

// Depth is bounded by the parser (kMaxDepth nesting, kMaxNodes nodes), so recursion is safe.
double Expression::eval_node(int32_t i, const std::vector<double>& values) const {
  const Node& n = nodes_[static_cast<size_t>(i)];
  auto truth = [](double v) { return v != 0; };  // NaN != 0 is true: callers check NaN first
  switch (n.op) {
    case Node::kNum: return n.num;
    case Node::kRef: return values[static_cast<size_t>(n.num)];
    case Node::kNeg: return -eval_node(n.a, values);
    case Node::kNot: {
      double v = eval_node(n.a, values);
      return std::isnan(v) ? kUnknown : (v == 0 ? 1.0 : 0.0);
    }
    case Node::kAnd: {
      double l = eval_node(n.a, values);
      if (!std::isnan(l) && !truth(l)) return 0;
      double r = eval_node(n.b, values);
      if (!std::isnan(r) && !truth(r)) return 0;
      return std::isnan(l) || std::isnan(r) ? kUnknown : 1.0;
    }
    case Node::kOr: {
      double l = eval_node(n.a, values);
      if (!std::isnan(l) && truth(l)) return 1;
      double r = eval_node(n.b, values);
      if (!std::isnan(r) && truth(r)) return 1;
      return std::isnan(l) || std::isnan(r) ? kUnknown : 0.0;
    }
    default: break;
  }
  double a = eval_node(n.a, values), b = eval_node(n.b, values);
  if (std::isnan(a) || std::isnan(b)) return kUnknown;
  switch (n.op) {
    case Node::kAdd: return a + b;
    case Node::kSub: return a - b;
    case Node::kMul: return a * b;
    case Node::kDiv: return a / b;  // x/0 is ±inf (compares fine), 0/0 NaN (unknown)
    case Node::kLt: return a < b;
    case Node::kLe: return a <= b;
    case Node::kGt: return a > b;
    case Node::kGe: return a >= b;
    case Node::kEq: return a == b;
    case Node::kNe: return a != b;
    default: return kUnknown;
  }
}

}  // namespace outpost::edge
