# Embeds a text file into a C++ source as a raw string literal:
#   cmake -DIN=file -DOUT=file.cc -DSYMBOL=name -P embed.cmake
# defines `const char* const midflight::<SYMBOL>` and `<SYMBOL>_size`.
file(READ "${IN}" content)
string(FIND "${content}" ")mf_embed\"" bad)
if(NOT bad EQUAL -1)
  message(FATAL_ERROR "${IN} contains the raw string delimiter )mf_embed\"")
endif()
string(LENGTH "${content}" size)
file(WRITE "${OUT}.tmp" "// Generated from ${IN} by cmake/embed.cmake; do not edit.\n#include <cstddef>\nnamespace midflight {\nextern const char* const ${SYMBOL};\nextern const std::size_t ${SYMBOL}_size;\nconst char* const ${SYMBOL} = R\"mf_embed(${content})mf_embed\";\nconst std::size_t ${SYMBOL}_size = ${size};\n}  // namespace midflight\n")
file(COPY_FILE "${OUT}.tmp" "${OUT}" ONLY_IF_DIFFERENT)
