// A small JSON reader for manifest.json: objects, arrays, strings (with \uXXXX escapes),
// numbers, true/false/null. Enough for the bundle contract; not a general-purpose library.
#ifndef AMC_RUNNER_JSON_HPP
#define AMC_RUNNER_JSON_HPP

#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace amc {

class Json {
 public:
  enum class Kind { Null, Bool, Number, String, Array, Object };

  static Json parse(const std::string& text);

  Kind kind() const { return kind_; }
  bool is_object() const { return kind_ == Kind::Object; }
  bool has(const std::string& key) const { return kind_ == Kind::Object && object_.count(key) != 0; }
  const Json& operator[](const std::string& key) const;
  const Json& operator[](size_t index) const;
  size_t size() const;
  double number() const;
  const std::string& string() const;
  std::vector<double> numbers() const;

 private:
  Kind kind_ = Kind::Null;
  bool boolean_ = false;
  double number_ = 0.0;
  std::string string_;
  std::vector<Json> array_;
  std::map<std::string, Json> object_;

  friend class JsonParser;
};

class JsonError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace amc

#endif
