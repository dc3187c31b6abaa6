"""Earthformer networks of PreDiff: the latent denoiser UNet and the knowledge-alignment encoder."""
from .align_encoder import NoisyCuboidTransformerEncoder
from .cuboid_attention import CuboidSelfAttentionLayer
from .unet import CuboidTransformerUNet

__all__ = ["CuboidSelfAttentionLayer", "CuboidTransformerUNet", "NoisyCuboidTransformerEncoder"]
