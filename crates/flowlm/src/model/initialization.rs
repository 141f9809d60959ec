//! Seeded weight initialization from our own RNG. burn's tensor RNG is global to the process,
//! so two models initialised at once (parallel tests, a server) would share draws; drawing here
//! makes "same seed -> same weights" hold regardless.

use crate::random::{StdRng, open_unit, rng_for};
use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::{Tensor, TensorData};

/// Stream salt of weight initialization.
const INIT_STREAM: u64 = 0x1417;

/// Re-draws every matrix: embeddings ~ N(0, `embedding_std`), linear weights `[in, out]` ~
/// U(-1/sqrt(in), 1/sqrt(in)) (burn's default), linear biases 0; norm scales keep their 1/0.
pub fn seeded_init<M: Module>(module: M, seed: u64, embedding_std: f64) -> M {
    struct Redraw {
        rng: StdRng,
        embedding_std: f64,
        containers: Vec<String>,
    }
    impl ModuleMapper for Redraw {
        fn enter_module(&mut self, _name: &str, container_type: &str) {
            self.containers.push(container_type.to_string());
        }
        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.containers.pop();
        }
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let inside = self.containers.last().map(String::as_str).unwrap_or("");
            let value = param.val();
            let shape = value.dims();
            let count: usize = shape.iter().product();
            let values: Vec<f32> = match (inside, D) {
                ("Struct:Embedding", 2) => (0..count)
                    .map(|_| (normal(&mut self.rng) * self.embedding_std) as f32)
                    .collect(),
                ("Struct:Linear", 2) => {
                    let bound = 1.0 / (shape[0] as f64).sqrt();
                    (0..count)
                        .map(|_| ((open_unit(&mut self.rng) * 2.0 - 1.0) * bound) as f32)
                        .collect()
                }
                ("Struct:Linear", 1) => vec![0.0; count],
                _ => return param,
            };
            let mut tensor =
                Tensor::<D>::from_data(TensorData::new(values, shape), &value.device());
            // A fresh tensor does not track gradients; keep what the parameter had.
            if value.is_require_grad() {
                tensor = tensor.require_grad();
            }
            Param::initialized(param.id, tensor)
        }
    }
    module.map(&mut Redraw {
        rng: rng_for(seed, INIT_STREAM),
        embedding_std,
        containers: Vec::new(),
    })
}

/// A standard normal draw (Box-Muller).
fn normal(rng: &mut StdRng) -> f64 {
    let (u, v) = (open_unit(rng), open_unit(rng));
    (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
}
