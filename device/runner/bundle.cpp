// The bundle as the device sees it: manifest.json read, the three graphs opened in their runtime,
// and the routing arithmetic of model/routing.py.
#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>

#include "runner.hpp"

namespace amc {

size_t dtype_size(DType dtype) {
  switch (dtype) {
    case DType::Float32: return 4;
    case DType::Int8: return 1;
    case DType::Int16: return 2;
  }
  return 1;
}

DType dtype_from_name(const std::string& name) {
  if (name == "float32") return DType::Float32;
  if (name == "int8") return DType::Int8;
  if (name == "int16") return DType::Int16;
  throw RunnerError("manifest: unsupported tensor dtype '" + name + "'");
}

size_t TensorSpec::count() const {
  size_t n = 1;
  for (int64_t d : shape) n *= static_cast<size_t>(d);
  return n;
}

static std::vector<TensorSpec> read_specs(const Json& list) {
  std::vector<TensorSpec> specs;
  for (size_t i = 0; i < list.size(); ++i) {
    const Json& item = list[i];
    TensorSpec spec;
    spec.name = item["name"].string();
    for (double d : item["shape"].numbers()) spec.shape.push_back(static_cast<int64_t>(d));
    spec.dtype = dtype_from_name(item["dtype"].string());
    if (item.has("scale") && item["scale"].kind() == Json::Kind::Number) {
      spec.quantized = true;
      spec.scale = item["scale"].number();
      spec.zero_point = item.has("zero_point") && item["zero_point"].kind() == Json::Kind::Number
                            ? static_cast<int64_t>(item["zero_point"].number())
                            : 0;
    }
    specs.push_back(spec);
  }
  return specs;
}

static std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw RunnerError(path + ": cannot open");
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

Bundle::Bundle(const std::string& dir) : directory(dir) {
  Json manifest;
  try {
    manifest = Json::parse(read_text(dir + "/manifest.json"));
    if (!manifest.has("schema") || manifest["schema"].string() != "amc-bundle")
      throw RunnerError(dir + "/manifest.json: not an amc bundle manifest");
    target = manifest["target"].string();
    backend = manifest["backend"].string();
    const Json& config = manifest["model"]["config"];
    for (size_t i = 0; i < config["vocabulary"].size(); ++i) vocabulary.push_back(config["vocabulary"][i].string());
    route_threshold = config["route_threshold"].number();
    nominal_mflops = config["nominal_mflops"].number();
    const Json& features = config["features"];
    frame_ms = features["hop_ms"].number() * features["stack"].number();
    frame_dim = static_cast<size_t>(features["n_mels"].number() * features["stack"].number());
    state_dim = static_cast<size_t>(config["hidden"].number() * config["layers"].number());
    const char* names[] = {"fast", "slow", "arbitrator"};
    GraphInfo* infos[] = {&fast, &slow, &arbitrator};
    for (int i = 0; i < 3; ++i) {
      const Json& graph = manifest["graphs"][names[i]];
      infos[i]->file = graph["file"].string();
      infos[i]->macs = graph.has("macs_per_frame_nonzero") ? graph["macs_per_frame_nonzero"].number()
                                                           : graph["macs_per_frame"].number();
      infos[i]->inputs = read_specs(graph["inputs"]);
      infos[i]->outputs = read_specs(graph["outputs"]);
    }
  } catch (const JsonError& error) {
    throw RunnerError(dir + "/manifest.json: " + error.what());
  }
  for (GraphInfo* info : {&fast, &slow, &arbitrator}) {
    std::string path = dir + "/" + info->file;
    if (backend == "executorch") info->runtime = open_executorch(path, info->inputs, info->outputs);
    else if (backend == "tflite") info->runtime = open_litert(path, info->inputs, info->outputs);
    else throw RunnerError("backend '" + backend + "' has no runtime in amc-runner (executorch, tflite)");
  }
}

GraphInfo& Bundle::graph(const std::string& name) {
  if (name == "fast") return fast;
  if (name == "slow") return slow;
  if (name == "arbitrator") return arbitrator;
  throw RunnerError("unknown graph '" + name + "' (fast, slow, arbitrator)");
}

// float -> the graph's input dtype: round half to even, as numpy and the converters do
static Tensor quantize(const std::vector<float>& values, const TensorSpec& spec) {
  Tensor t;
  t.dtype = spec.dtype;
  t.shape = spec.shape;
  t.bytes.resize(values.size() * dtype_size(spec.dtype));
  if (spec.dtype == DType::Float32) {
    std::copy(values.begin(), values.end(), t.f32());
    return t;
  }
  long lo = spec.dtype == DType::Int8 ? -128 : -32768, hi = spec.dtype == DType::Int8 ? 127 : 32767;
  for (size_t i = 0; i < values.size(); ++i) {
    long q = std::lrint(values[i] / spec.scale) + static_cast<long>(spec.zero_point);
    q = std::min(hi, std::max(lo, q));
    if (spec.dtype == DType::Int8) t.bytes[i] = static_cast<uint8_t>(static_cast<int8_t>(q));
    else reinterpret_cast<int16_t*>(t.bytes.data())[i] = static_cast<int16_t>(q);
  }
  return t;
}

static std::vector<float> dequantize(const Tensor& t, const TensorSpec& spec) {
  std::vector<float> out(t.count());
  for (size_t i = 0; i < out.size(); ++i) {
    if (t.dtype == DType::Float32) out[i] = t.f32()[i];
    else if (t.dtype == DType::Int8)
      out[i] = static_cast<float>((static_cast<int8_t>(t.bytes[i]) - spec.zero_point) * spec.scale);
    else
      out[i] = static_cast<float>((reinterpret_cast<const int16_t*>(t.bytes.data())[i] - spec.zero_point) * spec.scale);
  }
  return out;
}

std::vector<std::vector<float>> Bundle::step(GraphInfo& graph, const std::vector<const std::vector<float>*>& inputs) {
  std::vector<Tensor> tensors;
  for (size_t i = 0; i < inputs.size(); ++i) tensors.push_back(quantize(*inputs[i], graph.inputs.at(i)));
  std::vector<Tensor> results = graph.runtime->run(tensors);
  std::vector<std::vector<float>> out;
  for (size_t i = 0; i < results.size(); ++i) out.push_back(dequantize(results[i], graph.outputs.at(i)));
  return out;
}

CostsMs costs_ms(const Bundle& bundle, double mflops_per_s) {
  // BranchCosts(2 * macs / 1e6).ms(mflops): scale = 1000 / mflops, then mflops_graph * scale
  double scale = 1000.0 / mflops_per_s;
  return {2 * bundle.slow.macs / 1e6 * scale, 2 * bundle.fast.macs / 1e6 * scale,
          2 * bundle.arbitrator.macs / 1e6 * scale};
}

double advance_backlog(double backlog_ms, double cost_ms, double frame_ms) {
  return std::max(0.0, backlog_ms + cost_ms - frame_ms);
}

double fast_probability(const std::vector<float>& z) {
  // softmax in float32, as numpy does it on the float32 route logits
  float top = std::max(z.at(0), z.at(1));
  float e0 = std::exp(z[0] - top), e1 = std::exp(z[1] - top);
  return static_cast<double>(e1 / (e0 + e1));
}

int argmax(const std::vector<float>& values) {
  // the first of equal maxima, as torch.argmax
  return static_cast<int>(std::max_element(values.begin(), values.end()) - values.begin());
}

std::string greedy_decode(const std::vector<int>& best, const std::vector<std::string>& vocabulary) {
  std::string out;
  int previous = 0;  // blank
  for (int label : best) {
    if (label != previous && label != 0 && static_cast<size_t>(label) < vocabulary.size()) out += vocabulary[label];
    previous = label;
  }
  return out;
}

}  // namespace amc
