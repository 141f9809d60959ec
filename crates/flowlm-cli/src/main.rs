fn main() { flowlm::hello(); }
