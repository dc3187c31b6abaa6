"""PreDiff's frame-wise VAE (`AutoencoderKL`), its Gaussian posterior helpers and the PatchGAN discriminator."""
from . import posterior
from .autoencoder_kl import AutoencoderKL, Decoder, Encoder
from .discriminator import NLayerDiscriminator
from .posterior import kl, mode, sample, split_moments

__all__ = ["AutoencoderKL", "Decoder", "Encoder", "NLayerDiscriminator", "kl", "mode", "posterior", "sample",
           "split_moments"]
