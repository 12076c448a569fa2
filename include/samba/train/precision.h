#pragma once
// Moved to samba/runtime/device.h; kept until trainer.cpp includes that directly.
#include "samba/runtime/device.h"

namespace samba {
using runtime::AutocastScope;
using runtime::memory_in_use_bytes;
using runtime::peak_flops;
using runtime::pick_device;
}  // namespace samba
