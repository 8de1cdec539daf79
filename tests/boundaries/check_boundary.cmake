# Builds one boundary case (CMakeLists.txt, "module boundaries") and checks the outcome:
# ALLOWED must compile; FORBIDDEN must fail, and fail because the header is not found (not for
# some other reason, which would make the check pass on a broken setup).
#   cmake -DBUILD_DIR=... -DCASE=... -DHEADER=... -DEXPECT=ALLOWED|FORBIDDEN -P check_boundary.cmake
execute_process(COMMAND ${CMAKE_COMMAND} --build ${BUILD_DIR} --target ${CASE}
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
set(log "${out}${err}")
if(EXPECT STREQUAL "ALLOWED")
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${CASE}: including ${HEADER} should build but failed:\n${log}")
  endif()
  message(STATUS "${CASE}: ${HEADER} is reachable, as declared")
else()
  if(rc EQUAL 0)
    message(FATAL_ERROR "${CASE}: including ${HEADER} built, but the dependency is not declared")
  endif()
  string(FIND "${log}" "${HEADER}: No such file or directory" at)
  if(at EQUAL -1)
    message(FATAL_ERROR "${CASE}: the build failed, but not because ${HEADER} was unreachable:\n${log}")
  endif()
  message(STATUS "${CASE}: ${HEADER} is unreachable, as it must be")
endif()
