# cmake "-DCOMMAND=program|arg|..." -DEXPECTED=FILE -P compare_output.cmake
# Runs COMMAND (its words joined by '|': the test program, under an emulator when
# cross-compiled) and fails unless it exits 0 and prints exactly the lines of EXPECTED.
string(REPLACE "|" ";" command "${COMMAND}")
execute_process(COMMAND ${command} RESULT_VARIABLE rc OUTPUT_VARIABLE actual ERROR_VARIABLE errors)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${command} exited with ${rc}: ${errors}")
endif()
file(READ ${EXPECTED} expected)
if(NOT actual STREQUAL expected)
  message(FATAL_ERROR "the output of ${command} differs from ${EXPECTED}:\n${actual}")
endif()
message(STATUS "the output of ${command} matches ${EXPECTED}")
