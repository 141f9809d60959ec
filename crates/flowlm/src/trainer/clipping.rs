//! Global gradient-norm clipping. burn's own clipping acts per parameter; the usual recipe
//! (and LLaDA's) clips the norm of all gradients together, which is what this does.

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::Tensor;

/// Scales `gradients` so their joint L2 norm is at most `max_norm`; returns the norm before.
pub fn clip_global_norm<M: Module>(
    module: &M,
    gradients: GradientsParams,
    max_norm: f64,
) -> (GradientsParams, f64) {
    struct SquaredNorm<'a> {
        gradients: &'a GradientsParams,
        total: f64,
    }
    impl ModuleVisitor for SquaredNorm<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(g) = self.gradients.get::<D>(param.id) {
                self.total += g.powi_scalar(2).sum().into_scalar::<f32>() as f64;
            }
        }
    }
    struct Scale {
        gradients: GradientsParams,
        factor: f64,
    }
    impl ModuleVisitor for Scale {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(g) = self.gradients.remove::<D>(param.id) {
                self.gradients.register(param.id, g.mul_scalar(self.factor));
            }
        }
    }
    let mut norm = SquaredNorm {
        gradients: &gradients,
        total: 0.0,
    };
    module.visit(&mut norm);
    let total = norm.total.sqrt();
    if max_norm <= 0.0 || total <= max_norm || !total.is_finite() {
        return (gradients, total);
    }
    let mut scale = Scale {
        gradients,
        factor: max_norm / (total + 1e-6),
    };
    module.visit(&mut scale);
    (scale.gradients, total)
}
