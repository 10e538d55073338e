// A kernel's name from its address, as cudaFuncGetName gives it on a GPU: the function symbol of
// the executable or library that holds it. dladdr names only exported symbols, and kernels are
// mostly in anonymous namespaces, so this reads the module's own ELF symbol table (.symtab).
#include <dlfcn.h>
#include <elf.h>

#include <cstdint>
#include <cstring>
#include <fstream>
#include <iterator>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "internal.h"

namespace cudaemu {
namespace {

struct Symbol {
  uint64_t size;
  std::string name;
};
using SymbolTable = std::map<uint64_t, Symbol>;  // by value (the offset in the module)

template <typename T>
bool read_at(const std::vector<char>& file, uint64_t offset, T* out) {
  if (offset > file.size() || file.size() - offset < sizeof(T)) return false;
  std::memcpy(out, file.data() + offset, sizeof(T));
  return true;
}

SymbolTable load_symbols(const char* path) {
  SymbolTable table;
  std::ifstream in(path, std::ios::binary);
  const std::vector<char> file((std::istreambuf_iterator<char>(in)),
                               std::istreambuf_iterator<char>());
  Elf64_Ehdr eh{};
  if (!read_at(file, 0, &eh) || std::memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 ||
      eh.e_ident[EI_CLASS] != ELFCLASS64)
    return table;
  std::vector<Elf64_Shdr> sections(eh.e_shnum);
  for (size_t i = 0; i < sections.size(); ++i)
    if (!read_at(file, eh.e_shoff + i * sizeof(Elf64_Shdr), &sections[i])) return table;
  for (const Elf64_Shdr& sh : sections) {
    if (sh.sh_type != SHT_SYMTAB || sh.sh_link >= sections.size()) continue;
    const Elf64_Shdr& strings = sections[sh.sh_link];
    for (uint64_t at = sh.sh_offset; at + sizeof(Elf64_Sym) <= sh.sh_offset + sh.sh_size;
         at += sizeof(Elf64_Sym)) {
      Elf64_Sym sym{};
      if (!read_at(file, at, &sym) || ELF64_ST_TYPE(sym.st_info) != STT_FUNC || sym.st_value == 0)
        continue;
      if (sym.st_name >= strings.sh_size) continue;
      const char* name = file.data() + strings.sh_offset + sym.st_name;
      const size_t max = strings.sh_size - sym.st_name;
      table[sym.st_value] = {sym.st_size, std::string(name, strnlen(name, max))};
    }
  }
  return table;
}

}  // namespace

const char* function_name(const void* address) {
  static std::mutex lock;
  static auto* modules = new std::map<std::string, SymbolTable>;
  Dl_info info{};
  if (::dladdr(address, &info) == 0 || info.dli_fname == nullptr) return nullptr;
  if (info.dli_sname != nullptr && info.dli_saddr == address) return info.dli_sname;
  std::lock_guard guard(lock);
  auto it = modules->find(info.dli_fname);
  if (it == modules->end())
    it = modules->emplace(info.dli_fname, load_symbols(info.dli_fname)).first;
  const uint64_t offset =
      reinterpret_cast<uintptr_t>(address) - reinterpret_cast<uintptr_t>(info.dli_fbase);
  auto s = it->second.upper_bound(offset);
  if (s == it->second.begin()) return nullptr;
  --s;
  if (offset != s->first) return nullptr;  // a kernel's address is its function's start
  return s->second.name.c_str();
}

}  // namespace cudaemu
