"""Configuration: typed frozen dataclasses (`schema`) and the one loader (`loader`)."""
from .loader import (config_from_dict, config_to_yaml, load_config, override_config, preset_names,
                     write_resolved_config)
from .schema import (AlignConfig, Config, DataConfig, DiffusionConfig, MODEL_SECTIONS, SampleConfig, ScoreConfig,
                     TrainConfig, UNetConfig, VAEConfig, to_plain)

__all__ = [
    "AlignConfig", "Config", "DataConfig", "DiffusionConfig", "MODEL_SECTIONS", "SampleConfig", "ScoreConfig",
    "TrainConfig", "UNetConfig", "VAEConfig", "config_from_dict", "config_to_yaml", "load_config", "override_config", "preset_names",
    "to_plain", "write_resolved_config",
]
