// ecmoe._C: the engine's MoE layer (src/moe/moe_layer.h) for PyTorch, the compiled half of
// ecmoe.torch.MoE (python/ecmoe/torch/moe.py). One forward call makes one MoeLayer, which keeps
// that call's activations until autograd runs its backward (or drops the graph), so several
// forwards may be pending at once. Tensors are checked here (dtype, device, shape, contiguity)
// and every failure is a Python exception: TypeError, ValueError, NotImplementedError (CUDA) or
// ecmoe._C.EngineError (a RuntimeError) for what the engine itself rejects. The engine runs with
// the GIL released, on OpenMP threads shared with torch (one libgomp).
#include <pybind11/stl.h>
#include <torch/extension.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "core/error.h"
#include "core/precision.h"
#include "core/tensor_table.h"
#include "core/threads.h"
#include "moe/cutoffs.h"
#include "moe/moe_config.h"
#include "moe/moe_layer.h"
#include "moe/routing_stats.h"

namespace py = pybind11;

namespace ecmoe {
namespace {

struct TypeError : std::runtime_error {
  using std::runtime_error::runtime_error;
};
struct ValueError : std::runtime_error {
  using std::runtime_error::runtime_error;
};
struct DeviceError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

template <class E, class... Parts>
void require(bool cond, const Parts&... parts) {
  if (!cond) throw E(detail::concat(parts...));
}

std::string shape_text(at::IntArrayRef shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// torch's Python name of a dtype ("float32"), for messages.
std::string dtype_name(at::ScalarType type) {
  switch (type) {
    case at::kFloat:
      return "float32";
    case at::kDouble:
      return "float64";
    case at::kHalf:
      return "float16";
    case at::kBFloat16:
      return "bfloat16";
    case at::kInt:
      return "int32";
    case at::kLong:
      return "int64";
    default:
      return c10::toString(type);
  }
}

// A tensor the engine reads as a dense CPU array of `dtype` with the given shape.
void check_tensor(const at::Tensor& t, const std::string& name, at::ScalarType dtype,
                  const std::vector<int64_t>& shape) {
  require<DeviceError>(t.device().is_cpu(), "ecmoe.torch.MoE: ", name, " is on ", t.device().str(),
                       "; the engine runs on the CPU only (no CUDA yet)");
  require<TypeError>(t.scalar_type() == dtype, "ecmoe.torch.MoE: ", name, " must be ",
                     dtype_name(dtype), ", got ", dtype_name(t.scalar_type()));
  require<ValueError>(t.sizes().vec() == shape, "ecmoe.torch.MoE: ", name, " must have shape ",
                      shape_text(shape), ", got ", shape_text(t.sizes()));
  require<ValueError>(t.is_contiguous(), "ecmoe.torch.MoE: ", name, " must be contiguous");
  require<TypeError>(!t.is_sparse() && t.layout() == at::kStrided, "ecmoe.torch.MoE: ", name,
                     " must be a dense (strided) tensor");
}

const float* floats(const at::Tensor& t) { return t.data_ptr<float>(); }

py::dict stats_dict(const RoutingStats& stats) {
  py::dict d;
  for_each_reported_stat(stats, [&](const char* key, const auto& value) { d[key] = value; });
  d["requested_assignments"] = stats.requested_assignments;
  d["dropped_assignments"] = stats.dropped_assignments;
  return d;
}

// The plan as three tensors [slots], expert by expert in slot order: expert, token, gate.
py::tuple plan_tensors(const RoutingPlan& plan) {
  const int64_t slots = plan.slot_count();
  at::Tensor expert = at::empty({slots}, at::kLong), token = at::empty({slots}, at::kLong);
  at::Tensor gate = at::empty({slots}, at::kFloat);
  int64_t* e = expert.data_ptr<int64_t>();
  int64_t* t = token.data_ptr<int64_t>();
  float* g = gate.data_ptr<float>();
  for (int i = 0; i < plan.n_experts; ++i)
    for (int s = plan.expert_offsets[i]; s < plan.expert_offsets[i + 1]; ++s) {
      e[s] = i;
      t[s] = plan.slot_token[s];
      g[s] = plan.slot_gate[s];
    }
  return py::make_tuple(expert, token, gate);
}

struct Weights {
  std::optional<at::Tensor> router;
  at::Tensor w1, w2;
};

void check_weights(const MoeConfig& c, const Weights& w) {
  const int64_t d = c.d_model, f = c.d_ff, e = c.expert_count();
  if (router_has_weights(c.router)) {
    require<ValueError>(w.router.has_value(), "ecmoe.torch.MoE: the ", router_name(c.router),
                        " router needs router.weight");
    check_tensor(*w.router, "router.weight", at::kFloat, {d, e});
  }
  check_tensor(w.w1, "experts.w1", at::kFloat, {e, d, f});
  check_tensor(w.w2, "experts.w2", at::kFloat, {e, f, d});
}

MoeWeights engine_weights(const MoeConfig& c, const Weights& w) {
  MoeWeights out;
  if (router_has_weights(c.router)) out.router = floats(*w.router);
  out.w1 = floats(w.w1);
  out.w2 = floats(w.w2);
  return out;
}

// One forward call and what its backward needs: the layer (activations, plan) and the tensors
// whose memory the layer points into.
class Call {
 public:
  Call(const MoeConfig& config, at::Tensor x, Weights w)
      : layer_(config), x_(std::move(x)), w_(std::move(w)) {}
  // A finished call's layer serves another forward with the same config: its buffers are
  // already allocated (and their pages mapped), as the engine reuses a layer from step to step.
  void reuse(at::Tensor x, Weights w) {
    x_ = std::move(x);
    w_ = std::move(w);
    done_ = false;
  }

  MoeLayer& layer() { return layer_; }
  const at::Tensor& x() const { return x_; }
  const Weights& weights() const { return w_; }

  // dy [n, d] -> (dx, d router.weight or None, d w1, d w2); aux_grad: the gradient reaching the
  // weighted auxiliary loss.
  py::tuple backward(const at::Tensor& dy, double aux_grad) {
    require<std::logic_error>(!done_, "ecmoe.torch.MoE: backward ran twice over one forward");
    const MoeConfig& c = layer_.config();
    check_tensor(dy, "the output gradient", at::kFloat, x_.sizes().vec());
    at::Tensor dx = at::zeros_like(x_);
    at::Tensor dw1 = at::zeros_like(w_.w1), dw2 = at::zeros_like(w_.w2);
    std::optional<at::Tensor> drouter;
    MoeGrads g;
    g.w1 = dw1.data_ptr<float>();
    g.w2 = dw2.data_ptr<float>();
    if (router_has_weights(c.router)) {
      drouter = at::zeros_like(*w_.router);
      g.router = drouter->data_ptr<float>();
    }
    {
      py::gil_scoped_release release;
      layer_.backward(engine_weights(c, w_), g, floats(dy), dx.data_ptr<float>(), float(aux_grad));
    }
    done_ = true;
    return py::make_tuple(dx, drouter, dw1, dw2);
  }

 private:
  MoeLayer layer_;
  at::Tensor x_;
  Weights w_;
  bool done_ = false;
};

struct ForwardArgs {
  std::optional<at::Tensor> token_ids, cutoffs;
  bool training = true;
  uint64_t seed = 0;
  std::optional<std::string> route_by;
  bool update_cutoffs = false;
  // A call whose backward ran (or that needs none), made with the same config; nullptr: a new one.
  std::shared_ptr<Call> recycle;
};

// x [n, d] -> (y [n, d], aux {load_balance, z_loss, weighted_total}, stats, plan, call).
py::tuple forward(const MoeConfig& config, const at::Tensor& x,
                  const std::optional<at::Tensor>& router, const at::Tensor& w1,
                  const at::Tensor& w2, const ForwardArgs& args) {
  config.validate();
  require<ValueError>(x.dim() == 2, "ecmoe.torch.MoE: x must be [n, d_model], got shape ",
                      shape_text(x.sizes()));
  const int64_t n = x.size(0);
  require<ValueError>(n <= INT32_MAX, "ecmoe.torch.MoE: ", n, " tokens is too many (at most ",
                      INT32_MAX, ")");
  check_tensor(x, "x", at::kFloat, {n, config.d_model});
  Weights w{router, w1, w2};
  check_weights(config, w);
  MoeInput in;
  in.x = floats(x);
  in.n_tokens = int(n);
  in.training = args.training;
  in.seed = args.seed;
  if (args.route_by) in.router = parse_router_kind(*args.route_by);
  const RouterKind routed_by = in.router.value_or(config.router);
  if (args.token_ids) {
    check_tensor(*args.token_ids, "token_ids", at::kInt, {n});
    in.token_ids = args.token_ids->data_ptr<int32_t>();
  } else {
    require<ValueError>(routed_by != RouterKind::kHash || n == 0,
                        "ecmoe.torch.MoE: hash routing needs token_ids (one id per token)");
  }
  if (args.cutoffs) {
    check_tensor(*args.cutoffs, "router.cutoff", at::kFloat, {config.n_experts});
    in.cutoffs = floats(*args.cutoffs);
  }
  std::shared_ptr<Call> call = args.recycle;
  if (call)
    call->reuse(x, std::move(w));
  else
    call = std::make_shared<Call>(config, x, std::move(w));
  at::Tensor y = at::empty_like(x);
  MoeOutput out;
  {
    py::gil_scoped_release release;
    out = call->layer().forward(engine_weights(config, call->weights()), in, y.data_ptr<float>());
    if (args.update_cutoffs && args.cutoffs)
      update_cutoffs(std::span<float>(args.cutoffs->data_ptr<float>(), config.n_experts), out.stats,
                     config.threshold_ema_rate);
  }
  py::dict aux;
  aux["load_balance"] = out.aux.load_balance;
  aux["z_loss"] = out.aux.z_loss;
  aux["weighted_total"] = out.aux.weighted_total;
  return py::make_tuple(y, aux, stats_dict(out.stats), plan_tensors(call->layer().plan()), call);
}

// The engine's initial values (init_moe_params) for seed: (router.weight or None, w1, w2).
py::tuple init_params(const MoeConfig& config, uint64_t seed, float router_std) {
  TensorTable table;
  declare_moe_params(table, "", config);
  FlatBuffer params(table);
  init_moe_params(params, "", config, seed, router_std);
  auto copy = [&](const std::string& name) {
    const auto& spec = table.spec(name);
    at::Tensor t = at::empty(spec.shape, at::kFloat);
    std::copy_n(params.get(name), spec.numel(), t.data_ptr<float>());
    return t;
  };
  std::optional<at::Tensor> router;
  if (router_has_weights(config.router)) router = copy("router.weight");
  return py::make_tuple(router, copy("experts.w1"), copy("experts.w2"));
}

void set_threads(int threads) {
  set_thread_count(threads);
  at::set_num_threads(thread_count());  // the same libgomp: torch's pool follows
}

}  // namespace
}  // namespace ecmoe

PYBIND11_MODULE(_C, m) {
  using namespace ecmoe;
  m.doc() = "The ecmoe engine's MoE layer (compiled part of ecmoe.torch)";
  static py::exception<Error> engine_error(m, "EngineError", PyExc_RuntimeError);
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const ecmoe::TypeError& e) {
      PyErr_SetString(PyExc_TypeError, e.what());
    } catch (const ecmoe::ValueError& e) {
      PyErr_SetString(PyExc_ValueError, e.what());
    } catch (const ecmoe::DeviceError& e) {
      PyErr_SetString(PyExc_NotImplementedError, e.what());
    } catch (const Error& e) {
      engine_error(e.what());
    }
  });

  py::class_<MoeConfig>(m, "MoeConfig")
      .def(py::init<>())
      .def_readwrite("d_model", &MoeConfig::d_model)
      .def_readwrite("d_ff", &MoeConfig::d_ff)
      .def_readwrite("n_experts", &MoeConfig::n_experts)
      .def_property(
          "router", [](const MoeConfig& c) { return router_name(c.router); },
          [](MoeConfig& c, const std::string& name) { c.router = parse_router_kind(name); })
      .def_readwrite("capacity_factor_train", &MoeConfig::capacity_factor_train)
      .def_readwrite("capacity_factor_eval", &MoeConfig::capacity_factor_eval)
      .def_readwrite("group_size", &MoeConfig::group_size)
      .def_property(
          "max_experts_per_token",
          [](const MoeConfig& c) { return c.capped.max_experts_per_token; },
          [](MoeConfig& c, int b) { c.capped.max_experts_per_token = b; })
      .def_property(
          "capped_lambda", [](const MoeConfig& c) { return c.capped.lambda; },
          [](MoeConfig& c, float v) { c.capped.lambda = v; })
      .def_property(
          "capped_max_iterations", [](const MoeConfig& c) { return c.capped.max_iterations; },
          [](MoeConfig& c, int v) { c.capped.max_iterations = v; })
      .def_property(
          "capped_tolerance", [](const MoeConfig& c) { return c.capped.tolerance; },
          [](MoeConfig& c, float v) { c.capped.tolerance = v; })
      .def_property(
          "capped_epsilon_scaling", [](const MoeConfig& c) { return c.capped.epsilon_scaling; },
          [](MoeConfig& c, bool v) { c.capped.epsilon_scaling = v; })
      .def_readwrite("token_choice_k", &MoeConfig::token_choice_k)
      .def_readwrite("renormalize_gates", &MoeConfig::renormalize_gates)
      .def_readwrite("batch_prioritized", &MoeConfig::batch_prioritized)
      .def_readwrite("load_balance_weight", &MoeConfig::load_balance_weight)
      .def_readwrite("z_loss_weight", &MoeConfig::z_loss_weight)
      .def_readwrite("jitter", &MoeConfig::jitter)
      .def_readwrite("threshold_ema_rate", &MoeConfig::threshold_ema_rate)
      .def_readwrite("threshold_warmup_steps", &MoeConfig::threshold_warmup_steps)
      .def_property(
          "precision", [](const MoeConfig& c) { return precision_name(c.precision); },
          [](MoeConfig& c, const std::string& name) { c.precision = parse_precision(name); })
      .def("expert_count", &MoeConfig::expert_count)
      .def("validate", &MoeConfig::validate);
  m.def("router_has_weights",
        [](const std::string& name) { return router_has_weights(parse_router_kind(name)); });
  m.def("router_has_cutoffs",
        [](const std::string& name) { return router_has_cutoffs(parse_router_kind(name)); });

  py::class_<Call, std::shared_ptr<Call>>(m, "Call")
      .def("backward", &Call::backward, py::arg("dy"), py::arg("aux_grad"))
      .def_property_readonly("x", &Call::x);
  m.def(
      "forward",
      [](const MoeConfig& config, const at::Tensor& x, const std::optional<at::Tensor>& router,
         const at::Tensor& w1, const at::Tensor& w2, const std::optional<at::Tensor>& token_ids,
         const std::optional<at::Tensor>& cutoffs, bool training, uint64_t seed,
         const std::optional<std::string>& route_by, bool update, std::shared_ptr<Call> recycle) {
        return forward(config, x, router, w1, w2,
                       ForwardArgs{token_ids, cutoffs, training, seed, route_by, update, recycle});
      },
      py::arg("config"), py::arg("x"), py::arg("router"), py::arg("w1"), py::arg("w2"),
      py::arg("token_ids"), py::arg("cutoffs"), py::arg("training"), py::arg("seed"),
      py::arg("route_by"), py::arg("update_cutoffs"), py::arg("recycle") = nullptr);
  m.def("init_params", &init_params, py::arg("config"), py::arg("seed"), py::arg("router_std"));
  m.def("native_precision", [] { return precision_name(native_precision()); });
  m.def("set_num_threads", &set_threads, py::arg("threads"));
  m.def("get_num_threads", &thread_count);
  m.def("max_num_threads", &max_thread_count);
}
