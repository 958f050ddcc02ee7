// Audio in: WAV files and the front end (PCM -> frames) of a bundle.
#include <cstring>
#include <fstream>
#include <iterator>

#include "runner.hpp"

namespace amc {
namespace {

uint32_t le32(const uint8_t* b) {
  return static_cast<uint32_t>(b[0]) | static_cast<uint32_t>(b[1]) << 8 | static_cast<uint32_t>(b[2]) << 16 |
         static_cast<uint32_t>(b[3]) << 24;
}

uint16_t le16(const uint8_t* b) { return static_cast<uint16_t>(b[0] | b[1] << 8); }

std::vector<uint8_t> read_file(const std::string& path, const std::string& what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw BadInput(path + ": cannot open " + what);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

}  // namespace

// The same checks, in the same words, as amc data check (model/corpus/audio_folder.py).
std::vector<int16_t> read_wav(const std::string& path) {
  std::vector<uint8_t> file = read_file(path, "audio file");
  if (file.size() < 12 || std::memcmp(file.data(), "RIFF", 4) != 0 || std::memcmp(file.data() + 8, "WAVE", 4) != 0)
    throw BadInput(path + " is not a PCM WAV file (no RIFF/WAVE header)");
  bool have_format = false;
  for (size_t at = 12; at + 8 <= file.size();) {
    const uint8_t* chunk = file.data() + at;
    uint32_t size = le32(chunk + 4);
    size_t body = at + 8;
    if (std::memcmp(chunk, "fmt ", 4) == 0) {
      if (size < 16 || body + 16 > file.size()) throw BadInput(path + " is not a PCM WAV file (short fmt chunk)");
      const uint8_t* f = file.data() + body;
      if (le16(f) != 1) throw BadInput(path + " is not a PCM WAV file (format " + std::to_string(le16(f)) + ")");
      if (le32(f + 4) != 16000)
        throw BadInput(path + " has sample rate " + std::to_string(le32(f + 4)) + " Hz, expected 16000");
      if (le16(f + 2) != 1) throw BadInput(path + " has " + std::to_string(le16(f + 2)) + " channels, expected mono");
      if (le16(f + 14) != 16)
        throw BadInput(path + " has " + std::to_string(le16(f + 14)) + "-bit samples, expected 16-bit PCM");
      have_format = true;
    } else if (std::memcmp(chunk, "data", 4) == 0) {
      if (!have_format) throw BadInput(path + " is not a PCM WAV file (data before fmt)");
      if (size > file.size() - body)
        throw BadInput(path + " is truncated: its header promises " + std::to_string(size / 2) + " samples");
      std::vector<int16_t> pcm(size / 2);
      for (size_t i = 0; i < pcm.size(); ++i) pcm[i] = static_cast<int16_t>(le16(file.data() + body + 2 * i));
      return pcm;
    }
    at = body + size + (size & 1u);
  }
  throw BadInput(path + " is not a PCM WAV file (no data chunk)");
}

FrontEnd::FrontEnd(const Bundle& bundle) : tables_(read_file(bundle.directory + "/frontend.bin", "front end")) {
  int rc = amc_frontend_init(&state_, tables_.data(), tables_.size(), &FrontEnd::on_frame, this);
  if (rc != 0)
    throw BadInput(bundle.directory + "/frontend.bin: " + amc_frontend_strerror(rc) + " (recompile the bundle)");
  if (amc_frontend_frame_dim(&state_) != bundle.frame_dim)
    throw BadInput(bundle.directory + "/frontend.bin: frames of " + std::to_string(amc_frontend_frame_dim(&state_)) +
                   " features, the graphs take " + std::to_string(bundle.frame_dim));
}

void FrontEnd::on_frame(void* self, const float* frame, size_t frame_dim) {
  static_cast<FrontEnd*>(self)->ready.emplace_back(frame, frame + frame_dim);
}

void FrontEnd::push(const int16_t* pcm, size_t n) {
  int rc = amc_frontend_push(&state_, pcm, n);
  if (rc != 0) throw RunnerError(std::string("front end: ") + amc_frontend_strerror(rc));
}

void FrontEnd::reset() {
  amc_frontend_reset(&state_);
  ready.clear();
}

}  // namespace amc
