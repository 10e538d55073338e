// cudaemu: see cub/cudaemu_cub.h.
#pragma once
#include <cub/cudaemu_cub.h>
