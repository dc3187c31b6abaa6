"""Training: one trainer core (`Trainer`, `TrainStep`) and three losses (VAE, latent diffusion, alignment)."""
