"""A cell that differentiates a network with respect to every input and every trainable parameter."""
import mindspore as ms
from mindspore import nn, ops


class Grads(nn.Cell):
    """Grads(net)(*inputs, sens) -> (input gradients, parameter gradients) of net(*inputs) against `sens`."""

    def __init__(self, net):
        super().__init__()
        self.net = net
        self.weights = ms.ParameterTuple(net.trainable_params())
        self.grad = ops.GradOperation(get_all=True, get_by_list=True, sens_param=True)

    def construct(self, *inputs_and_sens):
        return self.grad(self.net, self.weights)(*inputs_and_sens)
