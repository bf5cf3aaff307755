// The format language of `loom jobs -o` (jobs_format.h): Python's
// format-spec mini-language with flux jobs's conversions and suffixes, so
// that a format written for `flux jobs` gives the same columns here.
#include "cli/jobs_format.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <ctime>

#include "cli/common.h"

namespace loom::cli {

namespace {

using Kind = FieldValue::Kind;

// Python's repr of a float: the shortest text that reads back the same,
// with ".0" on whole numbers.
std::string float_repr(double f) {
  if (std::isnan(f)) return "nan";
  if (std::isinf(f)) return f < 0 ? "-inf" : "inf";
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, f);
  std::string s(buf, end);
  if (s.find_first_of(".eEn") == std::string::npos) s += ".0";
  return s;
}

// Python's str() of a value.
std::string as_str(const FieldValue& v) {
  switch (v.kind) {
    case Kind::kInt: return std::to_string(v.i);
    case Kind::kFloat: return float_repr(v.f);
    case Kind::kString: break;
  }
  return v.s;
}

bool is_number(const FieldValue& v) { return v.kind != Kind::kString; }
double number(const FieldValue& v) { return v.kind == Kind::kInt ? static_cast<double>(v.i) : v.f; }

size_t codepoints(const std::string& s) {
  size_t n = 0;
  for (unsigned char ch : s) n += (ch & 0xC0) != 0x80;
  return n;
}

// The first `n` code points of `s`.
std::string first_codepoints(const std::string& s, size_t n) {
  size_t i = 0, seen = 0;
  for (; i < s.size(); ++i) {
    if ((static_cast<unsigned char>(s[i]) & 0xC0) != 0x80) {
      if (seen == n) break;
      ++seen;
    }
  }
  return s.substr(0, i);
}

// Python's str(timedelta(seconds=round(s))): "0:00:05", "1 day, 2:03:04".
std::string hhmmss(double s) {
  long t = std::lround(std::max(0.0, s));
  long days = t / 86400;
  t %= 86400;
  char buf[64];
  std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", t / 3600, (t / 60) % 60, t % 60);
  if (days == 0) return buf;
  return std::to_string(days) + (days == 1 ? " day, " : " days, ") + buf;
}

}  // namespace

// ---------------------------------------------------------------- specs

namespace {

using Spec = JobsFormat::Spec;
using Piece = JobsFormat::Piece;

bool is_align(char c) { return c == '<' || c == '>' || c == '^' || c == '='; }

// Python's format-spec mini-language, after flux's "h" and "+" suffixes.
Result<Spec> parse_spec(std::string s) {
  Spec sp;
  const std::string whole = s;
  if (s.ends_with("+")) {
    sp.truncmark = true;
    s.pop_back();
  }
  if (s.ends_with("h")) {
    sp.hyphen = true;
    s.pop_back();
  }
  size_t i = 0;
  // [[fill]align]: the fill is one code point.
  size_t first_len = 1;
  while (first_len < s.size() && (static_cast<unsigned char>(s[first_len]) & 0xC0) == 0x80) ++first_len;
  if (s.size() > first_len && is_align(s[first_len])) {
    sp.fill = s.substr(0, first_len);
    sp.align = s[first_len];
    i = first_len + 1;
  } else if (!s.empty() && is_align(s[0])) {
    sp.align = s[0];
    i = 1;
  }
  if (i < s.size() && (s[i] == '+' || s[i] == '-' || s[i] == ' ')) sp.sign = s[i++];
  if (i < s.size() && s[i] == '#') sp.alt = true, ++i;
  if (i < s.size() && s[i] == '0') sp.zero = true, ++i;
  size_t w = i;
  while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i;
  if (i > w) {
    if (i - w > 6) return Error{EINVAL, "width too large in format spec \"" + whole + "\""};
    sp.width = std::stoul(s.substr(w, i - w));
  }
  if (i < s.size() && (s[i] == ',' || s[i] == '_')) sp.grouping = s[i++];
  if (i < s.size() && s[i] == '.') {
    size_t p = ++i;
    while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i;
    if (i == p) return Error{EINVAL, "format spec \"" + whole + "\" is missing its precision"};
    if (i - p > 6) return Error{EINVAL, "precision too large in format spec \"" + whole + "\""};
    sp.precision = std::stoi(s.substr(p, i - p));
  }
  if (i < s.size() && std::strchr("bcdeEfFgGnosxX%", s[i])) sp.type = s[i++];
  if (i != s.size()) return Error{EINVAL, "invalid format spec \"" + whole + "\""};
  if (sp.hyphen && sp.type) return Error{EINVAL, "format spec \"" + whole + "\": \"h\" takes the place of a type"};
  return sp;
}

std::string group_digits(const std::string& digits, char sep, size_t every) {
  std::string out;
  size_t n = digits.size();
  for (size_t k = 0; k < n; ++k) {
    if (k > 0 && (n - k) % every == 0) out += sep;
    out += digits[k];
  }
  return out;
}

std::string pad(const std::string& body, const std::string& sign, const Spec& sp, char dflt) {
  char align = sp.align;
  std::string fill = sp.fill;
  if (!align && sp.zero) {
    align = '=';
    fill = "0";
  }
  if (!align) align = dflt;
  size_t len = codepoints(sign) + codepoints(body);
  if (len >= sp.width) return sign + body;
  size_t n = sp.width - len;
  auto fills = [&](size_t k) {
    std::string out;
    for (size_t x = 0; x < k; ++x) out += fill;
    return out;
  };
  switch (align) {
    case '<': return sign + body + fills(n);
    case '^': return fills(n / 2) + sign + body + fills(n - n / 2);
    case '=': return sign + fills(n) + body;
    default: return fills(n) + sign + body;
  }
}

const char* type_name(const FieldValue& v) {
  return v.kind == Kind::kString ? "str" : v.kind == Kind::kInt ? "int" : "float";
}

Result<std::string> format_float(double f, const Spec& sp) {
  char type = sp.type ? sp.type : 0;
  std::string sign = std::signbit(f) && !std::isnan(f) ? "-" : (sp.sign == '+' ? "+" : sp.sign == ' ' ? " " : "");
  double a = std::fabs(f);
  std::string body;
  char buf[512];
  if (type == 0 && sp.precision < 0) {
    body = float_repr(a);
  } else {
    int prec = sp.precision < 0 ? 6 : sp.precision;
    double x = type == '%' ? a * 100 : a;
    char conv = type == 0 || type == 'n' ? 'g' : type == '%' ? 'f' : type;
    std::string f_spec = std::string("%") + (sp.alt ? "#" : "") + "." + std::to_string(prec) + conv;
    std::snprintf(buf, sizeof buf, f_spec.c_str(), x);
    body = buf;
    if (type == '%') body += "%";
  }
  if (sp.grouping) {
    size_t end = body.find_first_not_of("0123456789");
    body = group_digits(body.substr(0, end), sp.grouping, 3) + (end == std::string::npos ? "" : body.substr(end));
  }
  return pad(body, sign, sp, '>');
}

Result<std::string> format_int(int64_t i, const Spec& sp) {
  char type = sp.type;
  if (std::strchr("eEfFgG%", type) && type) return format_float(static_cast<double>(i), sp);
  if (sp.precision >= 0) return Error{EINVAL, "precision not allowed in integer format specifier"};
  std::string sign = i < 0 ? "-" : (sp.sign == '+' ? "+" : sp.sign == ' ' ? " " : "");
  uint64_t a = i < 0 ? static_cast<uint64_t>(-(i + 1)) + 1 : static_cast<uint64_t>(i);
  std::string body;
  char buf[80];
  if (type == 'c') {
    if (!sp.sign && a < 0x80) return pad(std::string(1, static_cast<char>(a)), "", sp, '<');
    return Error{EINVAL, "%c arg not in range(0x80)"};
  }
  int base = type == 'b' ? 2 : type == 'o' ? 8 : (type == 'x' || type == 'X') ? 16 : 10;
  if (base == 10) {
    body = std::to_string(a);
  } else {
    auto [end, ec] = std::to_chars(buf, buf + sizeof buf, a, base);
    body.assign(buf, end);
    if (type == 'X') {
      for (auto& ch : body) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
    }
  }
  if (sp.grouping) body = group_digits(body, sp.grouping, base == 10 ? 3 : 4);
  if (sp.alt && base != 10)
    sign += std::string("0") + (type == 'b' ? "b" : type == 'o' ? "o" : type == 'x' ? "x" : "X");
  return pad(body, sign, sp, '>');
}

// Python's format(value, spec) for the three kinds of value.
Result<std::string> format_value(const FieldValue& v, const Spec& sp) {
  if (v.kind == Kind::kString) {
    if (sp.type && sp.type != 's') {
      return Error{EINVAL, std::string("unknown format code '") + sp.type + "' for object of type 'str'"};
    }
    if (sp.sign) return Error{EINVAL, "sign not allowed in string format specifier"};
    if (sp.alt) return Error{EINVAL, "alternate form (#) not allowed in string format specifier"};
    if (sp.grouping) return Error{EINVAL, "cannot specify ',' with 's'"};
    if (sp.align == '=') return Error{EINVAL, "'=' alignment not allowed in string format specifier"};
    std::string body = sp.precision >= 0 ? first_codepoints(v.s, static_cast<size_t>(sp.precision)) : v.s;
    Spec s2 = sp;
    if (s2.zero && !s2.align) s2.align = '<', s2.fill = "0";
    return pad(body, "", s2, '<');
  }
  if (sp.type == 's') {
    return Error{EINVAL, std::string("unknown format code 's' for object of type '") + type_name(v) + "'"};
  }
  if (v.kind == Kind::kInt) return format_int(v.i, sp);
  if (sp.type && std::strchr("bcdoxX", sp.type)) {
    return Error{EINVAL, std::string("unknown format code '") + sp.type + "' for object of type 'float'"};
  }
  return format_float(v.f, sp);
}

// flux jobs's conversions (!D !F !H !P, and Python's !s), before the spec.
FieldValue convert(const FieldValue& v, char conv) {
  switch (conv) {
    case 's': return text(as_str(v));
    case 'D': return text(is_number(v) && number(v) != 0 ? local_time(number(v), "%Y-%m-%dT%H:%M:%S") : "");
    case 'F': return text(is_number(v) ? format_fsd(number(v)) : "");
    case 'H': return text(is_number(v) ? hhmmss(number(v)) : "");
    case 'P': {
      if (!is_number(v)) return text("");
      double pct = number(v) * 100;
      char buf[64];
      std::snprintf(buf, sizeof buf, pct >= 10 ? "%.0f%%" : "%.2g%%", pct);
      return text(buf);
    }
    default: return v;
  }
}

// What "h" turns into a hyphen, and what "?:" counts as empty.
bool is_base_case(const std::string& s) {
  static const std::string local_epoch = local_time(0, "%Y-%m-%dT%H:%M:%S");
  return s.empty() || s == "0s" || s == "0.0" || s == "0:00:00" || s == "1970-01-01T00:00:00" || s == local_epoch;
}

// A value through the spec, with flux's "h" and "+" suffixes.
Result<std::string> apply_spec(const FieldValue& v, const Spec& sp) {
  FieldValue val = v;
  Spec s2 = sp;
  if (sp.hyphen) {
    std::string s = as_str(v);
    val = text(is_base_case(s) ? "-" : s);
  }
  auto out = format_value(val, s2);
  if (!out.ok()) return out;
  if (sp.truncmark) {
    std::string whole = as_str(val);
    if (codepoints(*out) < codepoints(whole) && !out->empty()) {
      *out = first_codepoints(*out, codepoints(*out) - 1) + "+";
    }
  }
  return out;
}

// One field of one job, formatted.
Result<std::string> render_piece(const Piece& p, const Json& j, double now) {
  auto v = job_field(j, p.name, now);
  if (!v.ok()) return v.error();
  if (p.conv != 'd') return apply_spec(convert(*v, p.conv), p.spec);
  // !d: a datetime, formatted by strftime, then "::" and a spec for the text.
  std::string fmt = p.raw_spec;
  std::string result;
  if (is_number(*v) && number(*v) != 0) {
    if (fmt.empty()) {
      result = local_time(number(*v), "%Y-%m-%d %H:%M:%S");
      double frac = number(*v) - std::floor(number(*v));
      long us = std::lround(frac * 1e6);
      if (us > 0 && us < 1000000) {
        char buf[16];
        std::snprintf(buf, sizeof buf, ".%06ld", us);
        result += buf;
      }
    } else {
      result = local_time(number(*v), fmt.c_str());
    }
  }
  Spec sp = p.spec;
  if (sp.hyphen && result.empty()) result = "-";
  sp.hyphen = false;
  return apply_spec(text(result), sp);
}

bool known_conversion(char c) { return c == 's' || c == 'D' || c == 'd' || c == 'F' || c == 'H' || c == 'P'; }

}  // namespace

Result<JobsFormat> JobsFormat::parse(std::string_view fmt) {
  JobsFormat out;
  std::string literal;
  const Json probe{{"id", 0}, {"userid", 0}, {"state", "NEW"}};
  for (size_t i = 0; i < fmt.size();) {
    char c = fmt[i];
    if (c == '}') {
      if (i + 1 < fmt.size() && fmt[i + 1] == '}') {
        literal += '}';
        i += 2;
        continue;
      }
      return Error{EINVAL, "single '}' in the format (write }} for a brace)"};
    }
    if (c != '{') {
      literal += c;
      ++i;
      continue;
    }
    if (i + 1 < fmt.size() && fmt[i + 1] == '{') {
      literal += '{';
      i += 2;
      continue;
    }
    size_t end = fmt.find('}', i);
    if (end == std::string_view::npos) return Error{EINVAL, "unclosed '{' in the format"};
    std::string body(fmt.substr(i + 1, end - i - 1));
    if (body.find('{') != std::string::npos) {
      return Error{EINVAL, "nested '{' in {" + body + "}: a spec cannot hold a field"};
    }
    i = end + 1;
    Piece p;
    p.field = true;
    if (literal.ends_with("?:")) {
      p.collapsible = true;
      literal.resize(literal.size() - 2);
    }
    p.text = std::move(literal);
    literal.clear();
    size_t stop = body.find_first_of("!:");
    p.name = body.substr(0, stop);
    if (p.name.empty()) return Error{EINVAL, "{" + body + "}: a field needs a name"};
    std::string spec;
    if (stop != std::string::npos && body[stop] == '!') {
      if (stop + 1 >= body.size()) return Error{EINVAL, "{" + body + "}: a conversion follows \"!\""};
      p.conv = body[stop + 1];
      if (!known_conversion(p.conv)) {
        return Error{EINVAL,
                     "{" + body + "}: unknown conversion !" + std::string(1, p.conv) + " (!D, !d, !F, !H, !P or !s)"};
      }
      if (stop + 2 < body.size()) {
        if (body[stop + 2] != ':') return Error{EINVAL, "{" + body + "}: expected ':' after the conversion"};
        spec = body.substr(stop + 3);
      }
    } else if (stop != std::string::npos) {
      spec = body.substr(stop + 1);
    }
    if (auto v = job_field(probe, p.name, 0); !v.ok()) return v.error();
    std::string python_spec = spec;
    if (p.conv == 'd') {
      size_t sep = spec.find("::");
      p.raw_spec = spec.substr(0, sep);
      python_spec = sep == std::string::npos ? "" : spec.substr(sep + 2);
    }
    auto sp = parse_spec(python_spec);
    if (!sp.ok()) return Error{EINVAL, "{" + body + "}: " + sp.error().text};
    p.spec = *sp;
    out.pieces_.push_back(std::move(p));
  }
  if (!literal.empty()) {
    Piece tail;
    tail.text = std::move(literal);
    out.pieces_.push_back(std::move(tail));
  }
  return out;
}

JobsFormat JobsFormat::without_empty(const std::vector<Json>& jobs, double now) const {
  JobsFormat out;
  for (const auto& p : pieces_) {
    if (p.field && p.collapsible) {
      bool empty = true;
      for (const auto& j : jobs) {
        auto v = job_field(j, p.name, now);
        if (!v.ok()) continue;
        std::string s = p.conv == 'd' ? (is_number(*v) && number(*v) != 0 ? "x" : "") : as_str(convert(*v, p.conv));
        if (!is_base_case(s) && s != "0") {
          empty = false;
          break;
        }
      }
      if (empty) continue;
    }
    out.pieces_.push_back(p);
  }
  return out;
}

std::string JobsFormat::header() const {
  std::string out;
  for (const auto& p : pieces_) {
    out += p.text;
    if (!p.field) continue;
    // The heading takes the column's fill, alignment and width; a string's
    // precision cuts it too, a number's does not apply.
    Spec sp;
    sp.fill = p.spec.fill;
    sp.align = p.spec.align == '=' ? '>' : p.spec.align;
    sp.width = p.spec.width;
    sp.truncmark = p.spec.truncmark;
    if (p.spec.type == 0 || p.spec.type == 's') sp.precision = p.spec.precision;
    auto h = apply_spec(text(field_heading(p.name)), sp);
    out += h.ok() ? *h : field_heading(p.name);
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

Result<std::string> JobsFormat::render(const Json& job, double now) const {
  std::string out;
  for (const auto& p : pieces_) {
    out += p.text;
    if (!p.field) continue;
    auto v = render_piece(p, job, now);
    if (!v.ok()) return Error{EINVAL, "{" + p.name + "}: " + v.error().text};
    out += terminal_text(*v);
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

const std::vector<NamedFormat>& named_formats() {
  static const std::vector<NamedFormat> kFormats = {
      {"default", "Default loom jobs format",
       "{id.f58:>12} ?:{queue:<8.8} {username:<8.8} {name:<10.10+} {status_abbrev:>2.2} {ntasks:>6} {nnodes:>6h} "
       "{contextual_time!F:>8h} {contextual_info}"},
      {"long", "Extended job information",
       "{id.f58:>12} ?:{queue:<8.8} {username:<8.8} {name:<10.10+} {status:>9.9} {ntasks:>6} {nnodes:>6h} "
       "{t_submit!d:%b%d %R::>12} {t_remaining!F:>12h} {contextual_time!F:>8h} {contextual_info}"},
      {"deps", "Show job urgency, priority, and dependencies",
       "{id.f58:>12} ?:{queue:<8.8} {name:<10.10+} {urgency:<3} {priority:<12} {state:<8.8} {dependencies}"},
      {"endreason", "Show why each job ended",
       "{id.f58:>12} ?:{queue:<8.8} {username:<8.8} {name:<10.10+} {t_inactive!d:%b%d %R::>12h} {status:>10.10} "
       "{inactive_reason}"},
  };
  return kFormats;
}

}  // namespace loom::cli
