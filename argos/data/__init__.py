"""Data: the series model, dataset loaders, the demo dataset, the dataset catalogue and the split
protocol."""
