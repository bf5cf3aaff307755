# Bash completion for loom, made from its own --help by
# scripts/gen-completion each time loom is linked (and when the script
# changes), as etc/man.cmake makes the man pages: it completes the
# commands and options that loom has, and it is there whenever loom is.
# Included from src/CMakeLists.txt, where the target is (a POST_BUILD
# command must be in its target's directory); etc/CMakeLists.txt installs
# it.
set(LOOM_COMPLETION "${PROJECT_BINARY_DIR}/completion/loom" CACHE INTERNAL "Where the build writes loom's bash completion")
# ASAN_OPTIONS: a sanitizer build's leak report at exit is not the help.
add_custom_command(TARGET loom POST_BUILD
  COMMAND ${CMAKE_COMMAND} -E env ASAN_OPTIONS=detect_leaks=0
          ${PROJECT_SOURCE_DIR}/scripts/gen-completion $<TARGET_FILE:loom> ${LOOM_COMPLETION}
  BYPRODUCTS ${LOOM_COMPLETION}
  COMMENT "Making bash completion from loom --help"
  VERBATIM)
set_property(TARGET loom APPEND PROPERTY LINK_DEPENDS ${PROJECT_SOURCE_DIR}/scripts/gen-completion)
