#!/usr/bin/env python3
"""Include what you use, for the standard library: every file under src/, tests/ and python/csrc/
(the PyTorch extension; C++ and CUDA: .h, .cpp, .cu, .cuh) that names a standard type or function
includes its header itself (or its own .h does, for a .cpp or .cu), instead of getting it through
another header (for CUDA: nvcc's, CUB's or the project's). Such a slip builds
with one standard library and not with the next (GCC 13's libstdc++ dropped <cstdint> from
several headers).

    scripts/check_includes.py [FILES...]     default: src/, tests/, python/csrc/; exit 1 with one
                                             line a miss
"""

import pathlib
import re
import sys

# Name (a regex matched on code without comments and literals) -> the headers that declare it.
SIZE_T = ("cstddef", "cstdio", "cstdlib", "cstring", "ctime", "cwchar")
RULES = [
    (r"\b(std::)?u?int(8|16|32|64)_t\b|\b(std::)?u?intptr_t\b|\bU?INT(8|16|32|64)_(MAX|MIN)\b",
     ("cstdint",)),
    (r"\b(std::)?size_t\b", SIZE_T),
    (r"\b(std::)?ptrdiff_t\b|\bstd::byte\b|\bstd::nullptr_t\b", ("cstddef",)),
    (r"\bstd::(string|to_string|stoi|stol|stoll|stoul|stoull|stod|stof|getline)\b", ("string",)),
    (r"\bstd::string_view\b", ("string_view",)),
    (r"\bstd::vector\b", ("vector",)),
    (r"\bstd::(optional|nullopt)\b", ("optional",)),
    (r"\bstd::function\b", ("functional",)),
    (r"\bstd::(map|multimap)\b", ("map",)),
    (r"\bstd::(set|multiset)\b", ("set",)),
    (r"\bstd::unordered_map\b", ("unordered_map",)),
    (r"\bstd::unordered_set\b", ("unordered_set",)),
    (r"\bstd::array\b", ("array",)),
    (r"\bstd::deque\b", ("deque",)),
    (r"\bstd::span\b", ("span",)),
    (r"\bstd::variant\b|\bstd::(visit|holds_alternative|get_if)\b", ("variant",)),
    (r"\bstd::(tuple|make_tuple|tie)\b", ("tuple",)),
    (r"\bstd::(pair|make_pair|move|forward|swap|exchange|declval)\b", ("utility",)),
    (r"\bstd::(unique_ptr|shared_ptr|make_unique|make_shared)\b", ("memory",)),
    (r"\bstd::(sort|stable_sort|min|max|minmax|clamp|fill|fill_n|copy|copy_n|find|find_if|"
     r"count|count_if|any_of|all_of|none_of|reverse|max_element|min_element|equal|transform|"
     r"partial_sort|nth_element|lower_bound|upper_bound|unique|remove_if|shuffle|for_each|"
     r"ranges::[a-z_]+)\b", ("algorithm",)),
    (r"\bstd::(accumulate|iota|inner_product|partial_sum|gcd|lcm|midpoint)\b", ("numeric",)),
    (r"\bstd::numeric_limits\b", ("limits",)),
    (r"\bstd::(runtime_error|logic_error|invalid_argument|out_of_range|range_error)\b",
     ("stdexcept",)),
    (r"\bstd::(o|i)?stringstream\b", ("sstream",)),
    (r"\bstd::(o|i)?fstream\b", ("fstream",)),
    (r"\bstd::(cout|cerr|cin)\b", ("iostream",)),
    (r"\bstd::(mutex|lock_guard|unique_lock|scoped_lock)\b", ("mutex",)),
    (r"\bstd::(thread|this_thread)\b", ("thread",)),
    (r"\bstd::atomic\b", ("atomic",)),
    (r"\bstd::chrono\b", ("chrono",)),
    (r"\bstd::filesystem\b", ("filesystem",)),
    (r"\bstd::(sqrt|exp|log|log2|log1p|pow|fabs|isfinite|isnan|isinf|floor|ceil|round|lround|"
     r"llround|tanh|erf|cos|sin|fmax|fmin|nextafter|ldexp|frexp|expm1|trunc|hypot)\b", ("cmath",)),
    (r"\bstd::(printf|fprintf|snprintf|fopen|fclose|fread|fwrite|fflush|fputs|puts|FILE|"
     r"remove|rename|perror|fgets|fseek|ftell)\b", ("cstdio",)),
    (r"\bstd::(memcpy|memset|memcmp|memmove|strlen|strcmp|strncmp|strerror|strchr)\b",
     ("cstring",)),
    (r"\bstd::(getenv|exit|abort|strtol|strtoll|strtoul|strtoull|strtod|strtof|malloc|free|"
     r"system|atexit|aligned_alloc|_Exit|quick_exit)\b", ("cstdlib",)),
    (r"\bstd::(is_same_v|is_same|enable_if_t|is_integral_v|is_floating_point_v|remove_cvref_t|"
     r"decay_t|underlying_type_t|is_trivially_copyable_v|conditional_t|is_signed_v)\b",
     ("type_traits",)),
    (r"\bstd::initializer_list\b", ("initializer_list",)),
    (r"\bstd::(errc|error_code)\b", ("system_error",)),
    (r"\bstd::(bit_cast|popcount|countl_zero|countr_zero|bit_width|has_single_bit)\b", ("bit",)),
    (r"\bstd::(regex|regex_match|regex_search|smatch)\b", ("regex",)),
    (r"\bstd::(condition_variable)\b", ("condition_variable",)),
    (r"\bstd::(random_device|mt19937|mt19937_64|uniform_int_distribution)\b", ("random",)),
    (r"\bstd::(priority_queue|queue)\b", ("queue",)),
    (r"\bstd::(setw|setprecision|fixed)\b", ("iomanip",)),
    (r"\bstd::(exception|exception_ptr|current_exception|rethrow_exception)\b", ("exception",)),
    (r"\bstd::(strong_ordering|weak_ordering|partial_ordering)\b", ("compare",)),
]
RULES = [(re.compile(p), h) for p, h in RULES]
# Headers that by the standard include another (e.g. <iostream> gives <ostream>): none are
# counted here, except what the standard guarantees.
GUARANTEED = {
    "iostream": {"ostream", "istream"},
    "memory": set(),
}
INCLUDE = re.compile(r'^\s*#\s*include\s*[<"]([^>"]+)[>"]', re.M)


def strip(code):
    """Code without comments, string and character literals (raw strings included)."""
    code = re.sub(r'R"([^(\s]*)\((.|\n)*?\)\1"', '""', code)
    out, i, n = [], 0, len(code)
    while i < n:
        c = code[i]
        if code.startswith("//", i):
            j = code.find("\n", i)
            i = n if j < 0 else j
        elif code.startswith("/*", i):
            j = code.find("*/", i + 2)
            i = n if j < 0 else j + 2
        elif c in "\"'":
            j = i + 1
            while j < n and code[j] != c:
                j += 2 if code[j] == "\\" else 1
            out.append(c + c)
            i = j + 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def includes(path):
    return set(INCLUDE.findall(path.read_text(errors="replace")))


def misses(path):
    text = path.read_text(errors="replace")
    have = includes(path)
    if path.suffix in (".cpp", ".cu"):  # a .cpp or .cu may rely on its own header's includes
        own = path.with_suffix(".h")
        if own.exists():
            have |= includes(own)
    for h in list(have):
        have |= GUARANTEED.get(h, set())
    code = strip(INCLUDE.sub("", text))
    found = []
    for pattern, headers in RULES:
        if any(h in have for h in headers):
            continue
        m = pattern.search(code)
        if m:
            line = code[: m.start()].count("\n") + 1
            found.append(f"{path}: uses {m.group(0)} (line ~{line}) without #include <{headers[0]}>")
    return found


def main(argv):
    root = pathlib.Path(__file__).resolve().parent.parent
    files = [pathlib.Path(a) for a in argv[1:]] or sorted(
        p for d in ("src", "tests", "python/csrc") for p in (root / d).rglob("*")
        if p.suffix in (".h", ".cpp", ".cu", ".cuh") and "fixtures" not in p.parts)
    problems = [line for f in files for line in misses(f)]
    for line in problems:
        print(line)
    if problems:
        print(f"check_includes: {len(problems)} missing standard headers", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
