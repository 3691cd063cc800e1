"""Image datasets in and out: folders, Hugging Face datasets, hub ids, K-shot splits."""

from geosynth.data.dataset import ImageDataset, Sample
from geosynth.data.fewshot import few_shot_indices
from geosynth.data.folder import IMAGE_SUFFIXES, read_image_folder
from geosynth.data.hf import from_hf
from geosynth.data.load import check_source, load_dataset, open_dataset
from geosynth.data.names import prompt_name
from geosynth.data.raster import Raster, read_raster, write_raster
from geosynth.data.tile import tile_scenes
from geosynth.data.writer import ImageFolderWriter, check_output_dir, export_dataset

__all__ = [
    "IMAGE_SUFFIXES",
    "ImageDataset",
    "ImageFolderWriter",
    "Raster",
    "Sample",
    "check_output_dir",
    "check_source",
    "export_dataset",
    "few_shot_indices",
    "from_hf",
    "load_dataset",
    "open_dataset",
    "prompt_name",
    "read_image_folder",
    "read_raster",
    "tile_scenes",
    "write_raster",
]
