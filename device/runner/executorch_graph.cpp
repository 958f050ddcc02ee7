// ExecuTorch behind StepGraph: the `forward` method of a .pte through extension/module, with the
// XNNPACK delegate and the optimized/quantized kernel libraries linked in (their static
// registrations run when the shared libraries load).
#include <executorch/extension/module/module.h>
#include <executorch/extension/tensor/tensor.h>
#include <executorch/extension/threadpool/threadpool_guard.h>

#include "runner.hpp"

namespace amc {

namespace {

using executorch::aten::ScalarType;
using executorch::extension::Module;
using executorch::runtime::Error;
using executorch::runtime::EValue;

ScalarType scalar_type(DType dtype) {
  switch (dtype) {
    case DType::Float32: return ScalarType::Float;
    case DType::Int8: return ScalarType::Char;
    case DType::Int16: return ScalarType::Short;
  }
  return ScalarType::Float;
}

DType dtype_of(ScalarType type) {
  if (type == ScalarType::Float) return DType::Float32;
  if (type == ScalarType::Char) return DType::Int8;
  if (type == ScalarType::Short) return DType::Int16;
  throw RunnerError("ExecuTorch output of an unsupported scalar type");
}

class ExecutorchGraph : public StepGraph {
 public:
  ExecutorchGraph(const std::string& path, size_t outputs)
      : path_(path), module_(path, Module::LoadMode::Mmap), outputs_(outputs) {
    Error error = module_.load_forward();
    if (error != Error::Ok)
      throw RunnerError(path + ": ExecuTorch cannot load method 'forward' (error " +
                        std::to_string(static_cast<int>(error)) + ")");
  }

  std::vector<Tensor> run(const std::vector<Tensor>& inputs) override {
    bind(inputs);
    std::vector<EValue> result = call();
    std::vector<Tensor> out;
    for (size_t i = 0; i < result.size() && i < outputs_; ++i) {
      const auto& tensor = result[i].toTensor();
      Tensor t;
      t.dtype = dtype_of(tensor.scalar_type());
      for (ssize_t d = 0; d < tensor.dim(); ++d) t.shape.push_back(tensor.size(d));
      const uint8_t* data = static_cast<const uint8_t*>(tensor.const_data_ptr());
      t.bytes.assign(data, data + tensor.nbytes());
      out.push_back(std::move(t));
    }
    return out;
  }

  void bind(const std::vector<Tensor>& inputs) override {
    bound_.clear();
    std::vector<EValue> values;
    for (const Tensor& t : inputs) {
      std::vector<executorch::aten::SizesType> sizes(t.shape.begin(), t.shape.end());
      bound_.push_back(executorch::extension::from_blob(const_cast<uint8_t*>(t.bytes.data()), sizes,
                                                        scalar_type(t.dtype)));
      values.emplace_back(*bound_.back());
    }
    Error error = module_.set_inputs(values);
    if (error != Error::Ok)
      throw RunnerError(path_ + ": inputs refused (error " + std::to_string(static_cast<int>(error)) + ")");
  }

  void execute() override { call(); }

 private:
  // Module::execute hands the bound inputs to the method, runs it and returns its outputs.
  std::vector<EValue> call() {
    auto result = module_.execute(kMethod);
    if (!result.ok())
      throw RunnerError(path_ + ": forward failed (error " + std::to_string(static_cast<int>(result.error())) + ")");
    return std::move(*result);
  }

  const std::string kMethod = "forward";
  std::string path_;
  Module module_;
  size_t outputs_;
  std::vector<executorch::extension::TensorPtr> bound_;
};

}  // namespace

void run_on_calling_thread_only() { executorch::extension::threadpool::NoThreadPoolGuard::set_enabled(true); }

std::unique_ptr<StepGraph> open_executorch(const std::string& path, const std::vector<TensorSpec>& inputs,
                                           const std::vector<TensorSpec>& outputs) {
  (void)inputs;
  return std::unique_ptr<StepGraph>(new ExecutorchGraph(path, outputs.size()));
}

}  // namespace amc
