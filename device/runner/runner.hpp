// amc-runner: streams audio, or frames of features, through a compiled amc bundle on a Linux board.
//
// One graph runtime sits behind `StepGraph` (ExecuTorch here, LiteRT where it is built in);
// the bundle, the routing rule and the backlog are the same whichever runtime runs the graphs.
#ifndef AMC_RUNNER_HPP
#define AMC_RUNNER_HPP

#include <cstdint>
#include <cstdio>
#include <deque>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "json.hpp"

extern "C" {
#include "amc_frontend.h"
}

namespace amc {

class RunnerError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Input the user can fix (a file, an option): exit status 2.
class BadInput : public RunnerError {
 public:
  using RunnerError::RunnerError;
};

enum class DType : uint8_t { Float32 = 0, Int8 = 1, Int16 = 2 };

size_t dtype_size(DType dtype);
DType dtype_from_name(const std::string& name);

// One tensor as the graph's caller hands it over: its dtype, element count and raw bytes.
struct Tensor {
  DType dtype = DType::Float32;
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;

  size_t count() const { return bytes.size() / dtype_size(dtype); }
  float* f32() { return reinterpret_cast<float*>(bytes.data()); }
  const float* f32() const { return reinterpret_cast<const float*>(bytes.data()); }
};

// An input or output of a step graph as the manifest records it.
struct TensorSpec {
  std::string name;
  std::vector<int64_t> shape;
  DType dtype = DType::Float32;
  bool quantized = false;  // scale and zero point known
  double scale = 1.0;
  int64_t zero_point = 0;

  size_t count() const;
};

// A step graph in its runtime: tensors in the graph's own I/O dtypes in, the same out.
class StepGraph {
 public:
  virtual ~StepGraph() = default;
  virtual std::vector<Tensor> run(const std::vector<Tensor>& inputs) = 0;
  // The runtime's own call, for timing: `bind` hands the graph inputs that must outlive the calls
  // to `execute`, which runs the graph on them and leaves its outputs inside the runtime.
  virtual void bind(const std::vector<Tensor>& inputs) = 0;
  virtual void execute() = 0;
};

// From here on, graphs opened and run by the calling thread use that thread only (no thread pool).
void run_on_calling_thread_only();

std::unique_ptr<StepGraph> open_executorch(const std::string& path, const std::vector<TensorSpec>& inputs,
                                           const std::vector<TensorSpec>& outputs);
std::unique_ptr<StepGraph> open_litert(const std::string& path, const std::vector<TensorSpec>& inputs,
                                       const std::vector<TensorSpec>& outputs);

struct GraphInfo {
  std::string file;
  double macs = 0.0;  // per frame, non-zero weights (what a frame costs)
  std::vector<TensorSpec> inputs, outputs;
  std::unique_ptr<StepGraph> runtime;
};

// A bundle directory: manifest.json and the three graph files.
class Bundle {
 public:
  explicit Bundle(const std::string& directory);

  std::string directory, target, backend;
  std::vector<std::string> vocabulary;
  double route_threshold = 0.5, nominal_mflops = 0.0, frame_ms = 0.0;
  size_t frame_dim = 0, state_dim = 0;
  GraphInfo fast, slow, arbitrator;

  GraphInfo& graph(const std::string& name);
  // Float arrays in, float arrays out: quantizes and dequantizes where the graph's I/O is integer.
  std::vector<std::vector<float>> step(GraphInfo& graph, const std::vector<const std::vector<float>*>& inputs);
};

// Per-frame costs in milliseconds at a processor speed, as model/routing.py computes them.
struct CostsMs {
  double slow, fast, arbitrator;
};
CostsMs costs_ms(const Bundle& bundle, double mflops_per_s);

// The samples of a WAV file: 16 kHz, mono, 16-bit PCM, or a one-line BadInput saying what it is.
std::vector<int16_t> read_wav(const std::string& path);

// PCM in, the bundle's frames out: the C front end (device/frontend) on the bundle's frontend.bin,
// the same code and tables the host and the microcontrollers run.
class FrontEnd {
 public:
  explicit FrontEnd(const Bundle& bundle);
  FrontEnd(const FrontEnd&) = delete;
  FrontEnd& operator=(const FrontEnd&) = delete;
  void push(const int16_t* pcm, size_t n);  // complete frames go to `ready`
  void reset();                             // a new utterance
  std::deque<std::vector<float>> ready;

 private:
  static void on_frame(void* self, const float* frame, size_t frame_dim);
  std::vector<uint8_t> tables_;
  amc_frontend_t state_;
};

struct UtteranceResult {
  std::vector<bool> fast;          // route of each frame
  std::vector<double> backlog_ms;  // backlog seen before each frame
  double latency_ms = 0.0;         // backlog of the last frame
  std::string text;                // greedy CTC transcript
};

enum class Route { Arbitrator, Slow, Fast };

// Streams one utterance: `next_frame` fills a frame of frame_dim floats and returns false at the end;
// `on_step`, when given, sees the best label of every frame so far (for partial transcripts).
using StepObserver = std::function<void(const std::vector<int>& best_labels)>;
template <typename NextFrame>
UtteranceResult stream_utterance(Bundle& bundle, NextFrame next_frame, const CostsMs& costs, Route route,
                                 double threshold, const StepObserver& on_step = nullptr);

std::string greedy_decode(const std::vector<int>& best_labels, const std::vector<std::string>& vocabulary);
int argmax(const std::vector<float>& values);
double fast_probability(const std::vector<float>& route_logits);
double advance_backlog(double backlog_ms, double cost_ms, double frame_ms);

// ---- template definition ----------------------------------------------------------------------

template <typename NextFrame>
UtteranceResult stream_utterance(Bundle& bundle, NextFrame next_frame, const CostsMs& costs, Route route,
                                 double threshold, const StepObserver& on_step) {
  UtteranceResult out;
  std::vector<float> frame(bundle.frame_dim), h(bundle.state_dim, 0.0f), c(bundle.state_dim, 0.0f);
  std::vector<float> backlog_input(1);
  std::vector<int> best;
  double backlog = 0.0;
  while (next_frame(frame)) {
    bool go_fast = route == Route::Fast;
    double cost = 0.0;
    if (route == Route::Arbitrator) {
      backlog_input[0] = static_cast<float>(backlog);
      auto logits = bundle.step(bundle.arbitrator, {&frame, &backlog_input, &h});
      go_fast = fast_probability(logits[0]) > threshold;
      cost += costs.arbitrator;
    }
    auto outputs = bundle.step(go_fast ? bundle.fast : bundle.slow, {&frame, &h, &c});
    best.push_back(argmax(outputs[0]));
    h = std::move(outputs[1]);
    c = std::move(outputs[2]);
    out.fast.push_back(go_fast);
    out.backlog_ms.push_back(backlog);
    backlog = advance_backlog(backlog, cost + (go_fast ? costs.fast : costs.slow), bundle.frame_ms);
    if (on_step) on_step(best);
  }
  out.latency_ms = out.backlog_ms.empty() ? 0.0 : out.backlog_ms.back();
  out.text = greedy_decode(best, bundle.vocabulary);
  return out;
}

}  // namespace amc

#endif
