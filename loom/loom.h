// The public API in one include: tensors, autograd, and the functional ops.
#pragma once

#include "loom/autograd/checkpoint.h"
#include "loom/autograd/engine.h"
#include "loom/autograd/function.h"
#include "loom/core/allocator.h"
#include "loom/core/rng.h"
#include "loom/core/tensor.h"
#include "loom/nn/lora.h"
#include "loom/ops/elementwise.h"
#include "loom/ops/matmul.h"
#include "loom/ops/nn.h"
#include "loom/ops/reduce.h"
#include "loom/ops/shape.h"
