# Installs web/node_modules from web/package-lock.json, at build time.
#
#   cmake -DNPM=<npm> -DWEB_DIR=<web/> -DSTAMP=<file> -DREQUIRED=<file|file...>
#         [-DOMIT_DEV=ON] -P npm_ci.cmake
#
# Runs `npm ci` when node_modules is missing, older than package.json or package-lock.json,
# or lacks one of the REQUIRED files; otherwise it only touches STAMP. Any npm failure stops
# the build with a message that says what to do. OMIT_DEV skips devDependencies (the
# linter, ~200 MB of the ~215 MB) for builds without tests.
cmake_minimum_required(VERSION 3.22)

set(installed "${WEB_DIR}/node_modules/.package-lock.json")  # npm rewrites it on every install
string(REPLACE "|" ";" required "${REQUIRED}")

set(reason "")
if(NOT EXISTS "${installed}")
  set(reason "web/node_modules is missing")
else()
  foreach(input package.json package-lock.json .npmrc)
    if(NOT "${installed}" IS_NEWER_THAN "${WEB_DIR}/${input}")
      set(reason "web/${input} is newer than web/node_modules")
    endif()
  endforeach()
  foreach(file IN LISTS required)
    if(NOT EXISTS "${file}")
      set(reason "${file} is missing")
    endif()
  endforeach()
endif()

if(reason)
  message(STATUS "web: ${reason}: running npm ci")
  # --ignore-scripts: no install script runs (web/.npmrc says so too); swagger-ui-dist's
  # @scarf/scarf dependency would otherwise send analytics from its postinstall.
  set(args ci --ignore-scripts --no-audit --no-fund --prefer-offline)
  if(OMIT_DEV)
    list(APPEND args --omit=dev)
  endif()
  execute_process(
    COMMAND "${NPM}" ${args}
    WORKING_DIRECTORY "${WEB_DIR}"
    RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR
      "\nweb: `npm ci` failed in ${WEB_DIR} (${rc}).\n"
      "The /docs page and scripts/lint-openapi need web/node_modules. Check that the npm "
      "registry is reachable and that package.json matches package-lock.json, then run "
      "`npm ci` in web/ by hand to see the full error.\n")
  endif()
  foreach(file IN LISTS required)
    if(NOT EXISTS "${file}")
      message(FATAL_ERROR "web: npm ci finished but ${file} is missing; is package-lock.json right?")
    endif()
  endforeach()
endif()

file(TOUCH "${STAMP}")
