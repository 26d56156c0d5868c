"""GAN training: the state (`state`), the Ray-free loop (`loop`), checkpoints (`checkpoint`), the
run's identity (`identity`), the Ray adapter (`ray_runner`, `cluster`, `job`) and the stage's
outputs (`outputs`)."""
