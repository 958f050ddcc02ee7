// amc-runner: the device-side streaming runner of amc bundles.
//
//   amc-runner transcribe BUNDLE FILE.wav... [--mflops X] [--threshold P] [--route arbitrator|slow|fast]
//       PCM through the bundle's front end (frontend.bin, the C front end) and graphs: per file the
//       lines `stream` prints. WAV files must be 16 kHz, mono, 16-bit PCM.
//   amc-runner listen BUNDLE - [options as transcribe]
//       Raw S16_LE mono 16 kHz PCM from stdin (`arecord -f S16_LE -r 16000 -c 1 -t raw | ...`),
//       transcribed frame by frame as the samples arrive: `partial TEXT` lines, then the final
//       lines and `listen ... board_latency_ms=...` (end of input to final text, this board's clock).
//   amc-runner check BUNDLE FILE.wav --text TEXT --max-cer X [options as transcribe]
//       The health check an OTA client runs after installing a patch, before it commits: the
//       character error rate of the file's transcript against TEXT (edit distance over TEXT's
//       length, in Unicode characters, as amc eval counts it; a fraction, 0.25 is 25%). One line
//       `cer=C max_cer=X frames=N text=TRANSCRIPT`; exit status 0 when C <= X, 1 when over.
//   amc-runner features BUNDLE FILE.wav... OUT.amcf
//       The frames the board's front end makes, as AMCF.
//   amc-runner stream BUNDLE FEATURES [--mflops X] [--threshold P] [--route arbitrator|slow|fast]
//       FEATURES is an AMCF file or '-' (stdin, read frame by frame as it arrives). Prints, per
//       utterance: its frame count, fast frames and end-of-utterance latency, the route of every
//       frame (S slow, F fast) and the greedy CTC transcript.
//   amc-runner graph BUNDLE NAME INPUTS OUTPUTS
//       Runs graph NAME (fast, slow, arbitrator) on every record of INPUTS (AMCR, tensors in the
//       graph's own I/O dtypes) and writes its outputs as AMCR.
//   amc-runner info BUNDLE
//   amc-runner bench BUNDLE [--frames N] [--warmup W] [--single-thread]
//       Times the runtime's execute call of each graph, N calls a graph after W untimed rounds, on
//       fixed pseudo-random inputs in the graph's I/O dtypes; the graphs take turns call by call
//       (the first of each round rotates) so machine noise hits them alike. Prints one JSON object:
//       per graph the median, 90th percentile and minimum microseconds a call. Any bundle target is
//       accepted: it measures the machine the runner runs on.
//
// AMCF: "AMCF", u32 version 1, u32 frame_dim, u32 utterances; per utterance u32 frames, then
// frames * frame_dim float32. AMCR: "AMCR", u32 version 1, u32 records, u32 tensors per record;
// per tensor u8 dtype (0 float32, 1 int8, 2 int16), 3 zero bytes, u32 element count, the elements.
// All little-endian. Exit status: 0 ok, 1 runtime failure (check: over the tolerance), 2 bad input.
#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <random>
#include <string>

#include "runner.hpp"

#ifndef AMC_RUNNER_TARGET
#define AMC_RUNNER_TARGET "host"
#endif

namespace amc {
namespace {

struct Reader {
  FILE* file;
  std::string name;

  void read(void* out, size_t size) {
    if (size && std::fread(out, 1, size, file) != size) throw BadInput(name + ": truncated");
  }
  uint32_t u32() {
    uint8_t b[4];
    read(b, 4);
    return static_cast<uint32_t>(b[0]) | static_cast<uint32_t>(b[1]) << 8 | static_cast<uint32_t>(b[2]) << 16 |
           static_cast<uint32_t>(b[3]) << 24;
  }
  void magic(const char* expected) {
    char m[4];
    read(m, 4);
    if (std::memcmp(m, expected, 4) != 0) throw BadInput(name + ": not an " + std::string(expected, 4) + " file");
    if (u32() != 1) throw BadInput(name + ": unsupported version");
  }
};

struct Writer {
  FILE* file;
  void write(const void* data, size_t size) {
    if (size && std::fwrite(data, 1, size, file) != size) throw RunnerError("write failed");
  }
  void u32(uint32_t v) {
    uint8_t b[4] = {static_cast<uint8_t>(v), static_cast<uint8_t>(v >> 8), static_cast<uint8_t>(v >> 16),
                    static_cast<uint8_t>(v >> 24)};
    write(b, 4);
  }
};

const uint32_t kMaxCount = 1u << 26;  // bound every length read from a file

void check_target(const Bundle& bundle, bool any_target) {
  if (!any_target && bundle.target != AMC_RUNNER_TARGET)
    throw BadInput(bundle.directory + ": bundle is for target '" + bundle.target + "', this runner is built for '" +
                   AMC_RUNNER_TARGET + "' (recompile with amc compile --target " AMC_RUNNER_TARGET ")");
}

// The options of stream, transcribe and listen, after BUNDLE and the input.
struct StreamOptions {
  double mflops = 0.0, threshold = -1.0;
  Route route = Route::Arbitrator;
  bool any_target = false;

  StreamOptions(int argc, char** argv, int first) {
    for (int i = first; i < argc; ++i) {
      std::string flag = argv[i];
      if (flag == "--any-target") {
        any_target = true;
        continue;
      }
      if (i + 1 >= argc) throw BadInput(flag + ": missing value");
      std::string value = argv[++i];
      if (flag == "--mflops") mflops = std::stod(value);
      else if (flag == "--threshold") threshold = std::stod(value);
      else if (flag == "--route") {
        if (value == "arbitrator") route = Route::Arbitrator;
        else if (value == "slow") route = Route::Slow;
        else if (value == "fast") route = Route::Fast;
        else throw BadInput("--route: arbitrator, slow or fast");
      } else throw BadInput("unknown option " + flag);
    }
  }
  // The bundle's defaults where no option was given; the per-frame costs at that speed.
  CostsMs settle(const Bundle& bundle) {
    check_target(bundle, any_target);
    if (mflops <= 0.0) mflops = bundle.nominal_mflops;
    if (threshold < 0.0) threshold = bundle.route_threshold;
    return costs_ms(bundle, mflops);
  }
};

void print_utterance(uint32_t index, const UtteranceResult& result) {
  size_t fast = 0;
  std::string routes;
  for (bool f : result.fast) {
    fast += f;
    routes += f ? 'F' : 'S';
  }
  std::printf("utterance %u frames=%zu fast_frames=%zu latency_ms=%.6f\n", index, result.fast.size(), fast,
              result.latency_ms);
  std::printf("routes %u %s\n", index, routes.c_str());
  std::printf("text %u %s\n", index, result.text.c_str());
  std::fflush(stdout);
}

int stream(int argc, char** argv) {
  if (argc < 4) throw BadInput("usage: amc-runner stream BUNDLE FEATURES [--mflops X] [--threshold P] [--route R]");
  std::string features = argv[3];
  StreamOptions options(argc, argv, 4);
  Bundle bundle(argv[2]);
  CostsMs costs = options.settle(bundle);
  double mflops = options.mflops, threshold = options.threshold;
  Route route = options.route;

  FILE* file = features == "-" ? stdin : std::fopen(features.c_str(), "rb");
  if (!file) throw BadInput(features + ": cannot open");
  Reader in{file, features == "-" ? "stdin" : features};
  in.magic("AMCF");
  uint32_t frame_dim = in.u32(), utterances = in.u32();
  if (frame_dim != bundle.frame_dim)
    throw BadInput(in.name + ": frames of " + std::to_string(frame_dim) + " features, the bundle takes " +
                   std::to_string(bundle.frame_dim));
  size_t total_frames = 0, fast_frames = 0;
  for (uint32_t u = 0; u < utterances; ++u) {
    uint32_t frames = in.u32();
    if (frames > kMaxCount) throw BadInput(in.name + ": frame count out of range");
    uint32_t read = 0;
    auto next = [&](std::vector<float>& frame) {
      if (read == frames) return false;
      in.read(frame.data(), frame.size() * sizeof(float));
      ++read;
      return true;
    };
    UtteranceResult result = stream_utterance(bundle, next, costs, route, threshold);
    total_frames += result.fast.size();
    for (bool f : result.fast) fast_frames += f;
    print_utterance(u, result);
  }
  if (file != stdin) std::fclose(file);
  std::printf("summary target=%s backend=%s utterances=%u frames=%zu fast_frames=%zu mflops=%.3f threshold=%.6f\n",
              bundle.target.c_str(), bundle.backend.c_str(), utterances, total_frames, fast_frames, mflops, threshold);
  return 0;
}

// Frames of one recording, in order, as the front end makes them.
std::function<bool(std::vector<float>&)> frames_of(FrontEnd& front) {
  return [&front](std::vector<float>& frame) {
    if (front.ready.empty()) return false;
    frame = std::move(front.ready.front());
    front.ready.pop_front();
    return true;
  };
}

int transcribe(int argc, char** argv) {
  if (argc < 4) throw BadInput("usage: amc-runner transcribe BUNDLE FILE.wav... [--mflops X] [--threshold P] [--route R]");
  int first_option = 3;
  while (first_option < argc && argv[first_option][0] != '-') ++first_option;
  StreamOptions options(argc, argv, first_option);
  std::vector<std::vector<int16_t>> recordings;
  for (int i = 3; i < first_option; ++i) recordings.push_back(read_wav(argv[i]));  // all checked first
  Bundle bundle(argv[2]);
  CostsMs costs = options.settle(bundle);
  FrontEnd front(bundle);
  for (size_t u = 0; u < recordings.size(); ++u) {
    front.reset();
    front.push(recordings[u].data(), recordings[u].size());
    print_utterance(static_cast<uint32_t>(u), stream_utterance(bundle, frames_of(front), costs, options.route,
                                                               options.threshold));
  }
  return 0;
}

// Unicode code points of UTF-8 text (a byte that starts no valid sequence counts as one
// character), so that the error rate counts characters as Python's str does.
std::vector<uint32_t> code_points(const std::string& text) {
  std::vector<uint32_t> out;
  for (size_t i = 0; i < text.size();) {
    unsigned char lead = static_cast<unsigned char>(text[i]);
    size_t extra = lead >= 0xF0 && lead < 0xF8 ? 3 : lead >= 0xE0 ? 2 : lead >= 0xC0 ? 1 : 0;
    if (lead >= 0xF8 || (lead >= 0x80 && lead < 0xC0)) extra = 0;
    uint32_t point = extra == 0 ? lead : lead & (0x3F >> extra);
    size_t n = 1;
    for (; n <= extra && i + n < text.size(); ++n) {
      unsigned char next = static_cast<unsigned char>(text[i + n]);
      if ((next & 0xC0) != 0x80) break;
      point = point << 6 | (next & 0x3F);
    }
    if (n != extra + 1) point = lead, n = 1;  // a truncated sequence: its lead byte alone
    out.push_back(point);
    i += n;
  }
  return out;
}

// Levenshtein distance (insertions, deletions and substitutions cost 1), as model/decoding.py.
size_t edit_distance(const std::vector<uint32_t>& reference, const std::vector<uint32_t>& hypothesis) {
  std::vector<size_t> previous(hypothesis.size() + 1), current(hypothesis.size() + 1);
  for (size_t j = 0; j <= hypothesis.size(); ++j) previous[j] = j;
  for (size_t i = 1; i <= reference.size(); ++i) {
    current[0] = i;
    for (size_t j = 1; j <= hypothesis.size(); ++j)
      current[j] = std::min({previous[j] + 1, current[j - 1] + 1,
                             previous[j - 1] + (reference[i - 1] != hypothesis[j - 1] ? 1u : 0u)});
    std::swap(previous, current);
  }
  return previous[hypothesis.size()];
}

// The health check: transcribe one WAV file and compare with the expected text.
int check(int argc, char** argv) {
  const char* usage = "usage: amc-runner check BUNDLE FILE.wav --text TEXT --max-cer X [--mflops X] [--threshold P] "
                      "[--route R]";
  if (argc < 4) throw BadInput(usage);
  std::string expected, max_cer_text;
  bool have_text = false;
  std::vector<char*> rest(argv, argv + 4);  // program, command, BUNDLE, FILE.wav
  for (int i = 4; i < argc; ++i) {
    std::string flag = argv[i];
    if ((flag == "--text" || flag == "--max-cer") && i + 1 < argc) {
      (flag == "--text" ? expected : max_cer_text) = argv[++i];
      have_text |= flag == "--text";
    } else {
      rest.push_back(argv[i]);
    }
  }
  if (!have_text || max_cer_text.empty()) throw BadInput(usage);
  char* end = nullptr;
  double max_cer = std::strtod(max_cer_text.c_str(), &end);
  if (*end != '\0' || !(max_cer >= 0.0 && max_cer <= 1.0))
    throw BadInput("--max-cer " + max_cer_text + ": expected a fraction from 0 to 1 (0.25 is 25%)");
  StreamOptions options(static_cast<int>(rest.size()), rest.data(), 4);
  std::vector<int16_t> pcm = read_wav(argv[3]);
  Bundle bundle(argv[2]);
  CostsMs costs = options.settle(bundle);
  FrontEnd front(bundle);
  front.push(pcm.data(), pcm.size());
  UtteranceResult result = stream_utterance(bundle, frames_of(front), costs, options.route, options.threshold);
  std::vector<uint32_t> reference = code_points(expected);
  double cer = static_cast<double>(edit_distance(reference, code_points(result.text))) /
               static_cast<double>(std::max<size_t>(1, reference.size()));
  std::printf("cer=%.4f max_cer=%.4f frames=%zu text=%s\n", cer, max_cer, result.fast.size(), result.text.c_str());
  return cer <= max_cer ? 0 : 1;
}

// Raw S16_LE mono 16 kHz PCM from stdin (as `arecord -f S16_LE -r 16000 -c 1 -t raw` writes it),
// transcribed as it arrives: a `partial` line whenever the decoded text grows, the final text at
// the end of the stream, and the end-of-utterance latency on this board's clock (end of input to
// final text) beside the simulated backlog.
int listen(int argc, char** argv) {
  if (argc < 4 || std::string(argv[3]) != "-")
    throw BadInput("usage: amc-runner listen BUNDLE - [--mflops X] [--threshold P] [--route R]");
  StreamOptions options(argc, argv, 4);
  Bundle bundle(argv[2]);
  CostsMs costs = options.settle(bundle);
  FrontEnd front(bundle);
  const size_t chunk = 480;  // 30 ms: one frame's worth
  std::vector<int16_t> pcm(chunk);
  std::chrono::steady_clock::time_point input_ended;
  bool ended = false;
  auto next = [&](std::vector<float>& frame) {
    while (front.ready.empty() && !ended) {
      uint8_t raw[2 * chunk];
      size_t got = std::fread(raw, 1, sizeof raw, stdin);
      size_t samples = got / 2;
      for (size_t i = 0; i < samples; ++i) pcm[i] = static_cast<int16_t>(raw[2 * i] | raw[2 * i + 1] << 8);
      if (samples) front.push(pcm.data(), samples);
      if (got < sizeof raw && (std::feof(stdin) || std::ferror(stdin))) {
        ended = true;
        input_ended = std::chrono::steady_clock::now();
      }
    }
    return frames_of(front)(frame);
  };
  std::string shown;
  auto partial = [&](const std::vector<int>& best) {
    std::string text = greedy_decode(best, bundle.vocabulary);
    if (text != shown) {
      shown = text;
      std::printf("partial %s\n", text.c_str());
      std::fflush(stdout);
    }
  };
  UtteranceResult result = stream_utterance(bundle, next, costs, options.route, options.threshold, partial);
  if (!ended) input_ended = std::chrono::steady_clock::now();
  print_utterance(0, result);
  double board_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - input_ended).count();
  std::printf("listen frames=%zu board_latency_ms=%.3f simulated_latency_ms=%.3f mflops=%.3f\n", result.fast.size(),
              board_ms, result.latency_ms, options.mflops);
  return 0;
}

// The frames the board's front end makes of WAV files, as an AMCF file (for checking them
// against the host's).
int features(int argc, char** argv) {
  if (argc < 5) throw BadInput("usage: amc-runner features BUNDLE FILE.wav... OUT.amcf");
  std::vector<std::vector<int16_t>> recordings;
  for (int i = 3; i < argc - 1; ++i) recordings.push_back(read_wav(argv[i]));
  Bundle bundle(argv[2]);
  FrontEnd front(bundle);
  FILE* out_file = std::fopen(argv[argc - 1], "wb");
  if (!out_file) throw BadInput(std::string(argv[argc - 1]) + ": cannot create");
  Writer out{out_file};
  out.write("AMCF", 4);
  out.u32(1);
  out.u32(static_cast<uint32_t>(bundle.frame_dim));
  out.u32(static_cast<uint32_t>(recordings.size()));
  for (const auto& pcm : recordings) {
    front.reset();
    front.push(pcm.data(), pcm.size());
    out.u32(static_cast<uint32_t>(front.ready.size()));
    for (const auto& frame : front.ready) out.write(frame.data(), frame.size() * sizeof(float));
  }
  if (std::fclose(out_file) != 0) throw RunnerError(std::string(argv[argc - 1]) + ": write failed");
  std::printf("features utterances=%zu frame_dim=%zu\n", recordings.size(), bundle.frame_dim);
  return 0;
}

int graph(int argc, char** argv) {
  if (argc < 6) throw BadInput("usage: amc-runner graph BUNDLE NAME INPUTS OUTPUTS [--any-target]");
  Bundle bundle(argv[2]);
  check_target(bundle, argc > 6 && std::string(argv[6]) == "--any-target");
  GraphInfo& info = bundle.graph(argv[3]);
  FILE* file = std::fopen(argv[4], "rb");
  if (!file) throw BadInput(std::string(argv[4]) + ": cannot open");
  Reader in{file, argv[4]};
  in.magic("AMCR");
  uint32_t records = in.u32(), per_record = in.u32();
  if (per_record != info.inputs.size())
    throw BadInput(in.name + ": " + std::to_string(per_record) + " tensors a record, graph '" + argv[3] + "' takes " +
                   std::to_string(info.inputs.size()));
  FILE* out_file = std::fopen(argv[5], "wb");
  if (!out_file) throw BadInput(std::string(argv[5]) + ": cannot create");
  Writer out{out_file};
  out.write("AMCR", 4);
  out.u32(1);
  out.u32(records);
  out.u32(static_cast<uint32_t>(info.outputs.size()));
  for (uint32_t r = 0; r < records; ++r) {
    std::vector<Tensor> inputs;
    for (uint32_t i = 0; i < per_record; ++i) {
      uint8_t head[4];
      in.read(head, 4);
      Tensor t;
      if (head[0] > 2) throw BadInput(in.name + ": unknown dtype code");
      t.dtype = static_cast<DType>(head[0]);
      uint32_t count = in.u32();
      if (count != info.inputs[i].count() || t.dtype != info.inputs[i].dtype)
        throw BadInput(in.name + ": tensor " + std::to_string(i) + " does not match input '" + info.inputs[i].name + "'");
      t.shape = info.inputs[i].shape;
      t.bytes.resize(count * dtype_size(t.dtype));
      in.read(t.bytes.data(), t.bytes.size());
      inputs.push_back(std::move(t));
    }
    for (const Tensor& t : info.runtime->run(inputs)) {
      uint8_t head[4] = {static_cast<uint8_t>(t.dtype), 0, 0, 0};
      out.write(head, 4);
      out.u32(static_cast<uint32_t>(t.count()));
      out.write(t.bytes.data(), t.bytes.size());
    }
  }
  std::fclose(file);
  if (std::fclose(out_file) != 0) throw RunnerError(std::string(argv[5]) + ": write failed");
  std::printf("graph %s records=%u outputs=%zu\n", argv[3], records, info.outputs.size());
  return 0;
}

int info(int argc, char** argv) {
  if (argc < 3) throw BadInput("usage: amc-runner info BUNDLE");
  Bundle bundle(argv[2]);
  std::printf("bundle %s target=%s backend=%s runner_target=%s frame_dim=%zu state_dim=%zu frame_ms=%.3f "
              "threshold=%.6f nominal_mflops=%.3f macs_fast=%.0f macs_slow=%.0f macs_arbitrator=%.0f\n",
              bundle.directory.c_str(), bundle.target.c_str(), bundle.backend.c_str(), AMC_RUNNER_TARGET,
              bundle.frame_dim, bundle.state_dim, bundle.frame_ms, bundle.route_threshold, bundle.nominal_mflops,
              bundle.fast.macs, bundle.slow.macs, bundle.arbitrator.macs);
  return 0;
}

// Fixed pseudo-random values of the spec's dtype: floats in [-1, 1), integers over their whole range.
Tensor bench_input(const TensorSpec& spec, std::mt19937& random) {
  Tensor t;
  t.dtype = spec.dtype;
  t.shape = spec.shape;
  t.bytes.resize(spec.count() * dtype_size(spec.dtype));
  std::uniform_real_distribution<float> real(-1.0f, 1.0f);
  std::uniform_int_distribution<int> integer(spec.dtype == DType::Int8 ? -128 : -32768,
                                             spec.dtype == DType::Int8 ? 127 : 32767);
  for (size_t i = 0; i < spec.count(); ++i) {
    if (spec.dtype == DType::Float32) t.f32()[i] = real(random);
    else if (spec.dtype == DType::Int8) t.bytes[i] = static_cast<uint8_t>(static_cast<int8_t>(integer(random)));
    else reinterpret_cast<int16_t*>(t.bytes.data())[i] = static_cast<int16_t>(integer(random));
  }
  return t;
}

// The q-th quantile (0..1) of sorted values, nearest rank.
double quantile(const std::vector<double>& sorted, double q) {
  size_t rank = static_cast<size_t>(q * static_cast<double>(sorted.size() - 1) + 0.5);
  return sorted[std::min(rank, sorted.size() - 1)];
}

int bench(int argc, char** argv) {
  if (argc < 3) throw BadInput("usage: amc-runner bench BUNDLE [--frames N] [--warmup W] [--single-thread]");
  long frames = 2000, warmup = 200;
  bool single_thread = false;
  for (int i = 3; i < argc; ++i) {
    std::string flag = argv[i];
    if (flag == "--single-thread") {
      single_thread = true;
      continue;
    }
    if (i + 1 >= argc) throw BadInput(flag + ": missing value");
    std::string value = argv[++i];
    if (flag == "--frames") frames = std::stol(value);
    else if (flag == "--warmup") warmup = std::stol(value);
    else throw BadInput("unknown option " + flag);
  }
  if (frames < 1 || frames > static_cast<long>(kMaxCount) || warmup < 0 || warmup > static_cast<long>(kMaxCount))
    throw BadInput("--frames must be 1 or more and --warmup 0 or more (at most 2^26 each)");
  if (single_thread) run_on_calling_thread_only();  // before the graphs open: a delegate takes its pool then
  Bundle bundle(argv[2]);
  const char* names[] = {"fast", "slow", "arbitrator"};
  GraphInfo* graphs[] = {&bundle.fast, &bundle.slow, &bundle.arbitrator};
  std::mt19937 random(20210830);
  std::vector<Tensor> inputs[3];
  for (int g = 0; g < 3; ++g) {
    for (const TensorSpec& spec : graphs[g]->inputs) inputs[g].push_back(bench_input(spec, random));
    graphs[g]->runtime->bind(inputs[g]);
  }
  std::vector<double> micros[3];
  for (int g = 0; g < 3; ++g) micros[g].reserve(static_cast<size_t>(frames));
  for (long round = 0; round < warmup + frames; ++round) {
    for (int k = 0; k < 3; ++k) {
      int g = static_cast<int>((round + k) % 3);
      auto started = std::chrono::steady_clock::now();
      graphs[g]->runtime->execute();
      auto finished = std::chrono::steady_clock::now();
      if (round >= warmup) micros[g].push_back(std::chrono::duration<double, std::micro>(finished - started).count());
    }
  }
  std::printf("{\"runner_target\": \"%s\", \"bundle_target\": \"%s\", \"backend\": \"%s\", \"frames\": %ld, "
              "\"warmup\": %ld, \"threads\": \"%s\", \"graphs\": {",
              AMC_RUNNER_TARGET, bundle.target.c_str(), bundle.backend.c_str(), frames, warmup,
              single_thread ? "calling thread only" : "runtime default");
  for (int g = 0; g < 3; ++g) {
    std::sort(micros[g].begin(), micros[g].end());
    std::printf("%s\"%s\": {\"median_us\": %.3f, \"p90_us\": %.3f, \"min_us\": %.3f, \"macs\": %.0f}", g ? ", " : "",
                names[g], quantile(micros[g], 0.5), quantile(micros[g], 0.9), micros[g].front(), graphs[g]->macs);
  }
  std::printf("}}\n");
  return 0;
}

}  // namespace
}  // namespace amc

int main(int argc, char** argv) {
  std::string command = argc > 1 ? argv[1] : "";
  try {
    if (command == "stream") return amc::stream(argc, argv);
    if (command == "transcribe") return amc::transcribe(argc, argv);
    if (command == "listen") return amc::listen(argc, argv);
    if (command == "check") return amc::check(argc, argv);
    if (command == "features") return amc::features(argc, argv);
    if (command == "graph") return amc::graph(argc, argv);
    if (command == "info") return amc::info(argc, argv);
    if (command == "bench") return amc::bench(argc, argv);
    std::fprintf(stderr, "usage: amc-runner transcribe|listen|check|stream|features|graph|info|bench BUNDLE ...\n");
    return 2;
  } catch (const amc::BadInput& error) {
    std::fprintf(stderr, "amc-runner: error: %s\n", error.what());
    return 2;
  } catch (const std::exception& error) {
    std::fprintf(stderr, "amc-runner: error: %s\n", error.what());
    return 1;
  }
}
