@_exported import DiffusionTensor
