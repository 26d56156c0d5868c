"""GAN training: the Ray-free loop (`loop`), checkpoints (`checkpoint`) and the Ray adapter (`ray_runner`)."""
