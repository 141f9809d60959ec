//! Learning rate: linear warmup, then cosine decay to `final_ratio` of the peak.

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LearningRateSchedule {
    pub peak: f64,
    pub warmup_steps: usize,
    pub total_steps: usize,
    pub final_ratio: f64,
}

impl LearningRateSchedule {
    /// Rate for optimizer step `step` (0-based).
    pub fn at(&self, step: usize) -> f64 {
        if step < self.warmup_steps {
            return self.peak * (step + 1) as f64 / self.warmup_steps as f64;
        }
        let decay_steps = self.total_steps.saturating_sub(self.warmup_steps).max(1);
        let progress = ((step - self.warmup_steps) as f64 / decay_steps as f64).min(1.0);
        let cosine = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
        self.peak * (self.final_ratio + (1.0 - self.final_ratio) * cosine)
    }
}
