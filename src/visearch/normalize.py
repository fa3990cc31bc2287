"""How a trunk expects its input pixels scaled: the one statement both the transforms and the model files read.

EfficientNet-Lite was trained on inputs scaled to [-1, 1] ((x - 127) / 128); torchvision ImageNet
models expect the usual mean/std. A model's meta.json records which applies. Kept apart from the
transforms so that reading a model's files imports no torchvision.
"""

LITE_NORMALIZE = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
IMAGENET_NORMALIZE = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
