"""Print a small convolution matrix, its shape and its number of nonzeros."""

import numpy as np

import sparseconv


def main() -> None:
    weight = np.arange(1.0, 4.0).reshape(1, 1, 3)  # one 1-D kernel [1, 2, 3]
    A = sparseconv.conv_matrix(weight, (1, 6), padding=1)
    print("conv1d, kernel [1, 2, 3], input length 6, padding 1:")
    print(A.toarray())
    layer = sparseconv.conv_matrix(np.ones((16, 3, 3, 3)), (3, 32, 32), stride=2, padding=1)
    print(f"conv2d 3->16, 32x32, k3 s2 p1: shape {layer.shape}, nnz {layer.nnz}")


if __name__ == "__main__":
    main()
