"""Datasets: fetch to one npz format, load onto the training device, augment there."""

from soften.data.fetch import DATASET_BUILDERS, fetch_dataset, load_dataset_npz
from soften.data.device_data import DeviceData, augment_batch

__all__ = ["DATASET_BUILDERS", "fetch_dataset", "load_dataset_npz", "DeviceData", "augment_batch"]
