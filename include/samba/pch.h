// Precompiled header for every translation unit that uses torch (see CMakeLists.txt).
#pragma once
#include <torch/torch.h>
#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <vector>
