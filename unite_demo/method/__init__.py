"""The paper's method, for any world: the one denoiser signature and schedule alignment (experts),
the product of experts, once (combine), samplers with a preview per step (sampler), and how a
network is served (engines)."""
