//! Dense-layer and activation kernels for the hand-written MLP, forward and backward.
//! Weights are row-major with one row per output.

/// output[o] = bias[o] + Σ_i weights[o, i] · input[i].
pub fn dense(weights: &[f64], bias: &[f64], input: &[f64], output: &mut [f64]) {
    let inputs = input.len();
    for (index, value) in output.iter_mut().enumerate() {
        let row = &weights[index * inputs..(index + 1) * inputs];
        *value = bias[index] + row.iter().zip(input).map(|(w, x)| w * x).sum::<f64>();
    }
}

/// Backward of `dense`: `parameter_gradient` holds [weights | bias] for this layer and is
/// accumulated into; `input_gradient` is accumulated into as well.
pub fn dense_backward(
    weights: &[f64],
    input: &[f64],
    output_gradient: &[f64],
    parameter_gradient: &mut [f64],
    input_gradient: &mut [f64],
) {
    let inputs = input.len();
    let (weight_gradient, bias_gradient) = parameter_gradient.split_at_mut(weights.len());
    for (index, &d_output) in output_gradient.iter().enumerate() {
        let row = index * inputs..(index + 1) * inputs;
        for ((d_weight, &x), (d_input, &w)) in weight_gradient[row.clone()]
            .iter_mut()
            .zip(input)
            .zip(input_gradient.iter_mut().zip(&weights[row]))
        {
            *d_weight += d_output * x;
            *d_input += d_output * w;
        }
        bias_gradient[index] += d_output;
    }
}

/// Logistic sigmoid written to avoid overflow of e^{-z} for very negative z.
pub fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

pub fn silu(z: f64) -> f64 {
    z * sigmoid(z)
}

/// d/dz [z σ(z)] = σ(z) (1 + z (1 − σ(z))).
pub fn silu_derivative(z: f64) -> f64 {
    let s = sigmoid(z);
    s * (1.0 + z * (1.0 - s))
}
