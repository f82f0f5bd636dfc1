"""Pure, jit-compiled array functions: kernels, nulls, permutations, labelling, statistics."""
