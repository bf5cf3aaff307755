# The man pages loom.1 (and a loom-COMMAND.1 per command beside it) and
# loomd.8, made from the binaries' own --help by scripts/gen-man each time
# a binary is linked (and when the script changes), so that they list the options the binaries have and are there
# whenever the binaries are: building `loom loomd loom-shell` is enough
# for `cmake --install`. Included from src/CMakeLists.txt, where the
# targets are (a POST_BUILD command must be in its target's directory);
# etc/CMakeLists.txt installs the pages.
set(LOOM_MAN_DIR "${PROJECT_BINARY_DIR}/man" CACHE INTERNAL "Where the build writes the man pages")
file(MAKE_DIRECTORY "${LOOM_MAN_DIR}")
foreach(page loom.1 loomd.8)
  string(REGEX REPLACE "\\.[0-9]$" "" bin "${page}")
  # ASAN_OPTIONS: a sanitizer build's leak report at exit is not the help.
  add_custom_command(TARGET ${bin} POST_BUILD
    COMMAND ${CMAKE_COMMAND} -E env ASAN_OPTIONS=detect_leaks=0
            ${PROJECT_SOURCE_DIR}/scripts/gen-man ${bin} $<TARGET_FILE:${bin}> ${LOOM_MAN_DIR}/${page}.in
    BYPRODUCTS ${LOOM_MAN_DIR}/${page}.in
    COMMENT "Making ${page} from ${bin} --help"
    VERBATIM)
  set_property(TARGET ${bin} APPEND PROPERTY LINK_DEPENDS ${PROJECT_SOURCE_DIR}/scripts/gen-man)
endforeach()
