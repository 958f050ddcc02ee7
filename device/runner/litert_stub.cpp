// Built without LiteRT: a TFLite bundle is refused with a message that says how to get one.
#include "runner.hpp"

namespace amc {

std::unique_ptr<StepGraph> open_litert(const std::string& path, const std::vector<TensorSpec>&,
                                       const std::vector<TensorSpec>&) {
  throw RunnerError(path + ": this amc-runner is built without LiteRT (rebuild with -DAMC_RUNNER_LITERT=ON)");
}

}  // namespace amc
