@echo off
rem Starts the four AbTrack Notify services in this window: double-click it.
rem Uses the .exe files next to this file (a release archive), else builds them with cargo.
rem Closing the window stops all four. Ctrl-C stops the dashboard service first and then
rem the other three (answer N to "Terminate batch job (Y/N)?" so the clean-up runs; with Y
rem the other three stop when the window is closed).
rem Usage: start.bat [--dry-run] [--debug]
setlocal EnableExtensions EnableDelayedExpansion
chcp 65001 >nul
cd /d "%~dp0"
title AbTrack Notify
if "%~1"==":announce" goto announce

set "PROFILE=release"
:args
if "%~1"=="" goto args_done
if /i "%~1"=="--dry-run" (
  set "WA_MODE=dry-run"
  shift
  goto args
)
if /i "%~1"=="--debug" (
  set "PROFILE=debug"
  shift
  goto args
)
if /i "%~1"=="--help" goto usage
if /i "%~1"=="-h" goto usage
echo start.bat: unknown option %1 (try --help)
set "CODE=64"
goto fail
:usage
echo usage: start.bat [--dry-run] [--debug]
echo   --dry-run  nothing reaches WhatsApp: messages go to data\wa-gateway\dry-run.jsonl
echo   --debug    when building from source, build in debug mode
echo Environment: ABTRACK_BIN_DIR (folder of the four .exe files), ABTRACK_NO_BROWSER (do not open
echo the browser), and every service variable of docs\configuration.md.
exit /b 0
:args_done

set "SERVICES=wa-gateway sheets-logger dispatcher status-web"

rem ---- the binaries ----------------------------------------------------------------
if defined ABTRACK_BIN_DIR (
  set "BIN=%ABTRACK_BIN_DIR%"
) else (
  set "BIN=%~dp0"
  set "BIN=!BIN:~0,-1!"
)
set "MISSING="
for %%s in (%SERVICES%) do if not exist "!BIN!\%%s.exe" set "MISSING=1"
if defined MISSING if defined ABTRACK_BIN_DIR (
  echo start.bat: ABTRACK_BIN_DIR=%ABTRACK_BIN_DIR% does not hold the four .exe files ^(%SERVICES%^)
  set "CODE=64"
  goto fail
)
if defined MISSING (
  if not exist "Cargo.toml" (
    echo start.bat: the four .exe files ^(%SERVICES%^) are not next to start.bat. Unpack the whole release archive into one folder.
    set "CODE=69"
    goto fail
  )
  where cargo >nul 2>nul
  if errorlevel 1 (
    echo start.bat: the .exe files are not here and cargo is not installed.
    echo Install Rust from https://rustup.rs ^(with the "Desktop development with C++" build tools^), or download a release.
    set "CODE=69"
    goto fail
  )
  echo start.bat: building the services ^(!PROFILE!; the first build takes several minutes^)...
  set "FLAG="
  if "!PROFILE!"=="release" set "FLAG=--release"
  cargo build !FLAG! --locked -p abtrack-dispatcher -p abtrack-wa-gateway -p abtrack-sheets-logger -p abtrack-status-web
  if errorlevel 1 (
    echo start.bat: the build failed ^(see above^); Rust 1.94 or later and the MSVC build tools are needed.
    set "CODE=1"
    goto fail
  )
  set "BIN=%~dp0target\!PROFILE!"
)

rem ---- addresses: each client follows the address its server was given ---------------
if not defined STATUS_WEB_ADDR set "STATUS_WEB_ADDR=127.0.0.1:8080"
if not defined DISPATCHER_ADDR set "DISPATCHER_ADDR=127.0.0.1:50051"
if not defined WA_ADDR set "WA_ADDR=127.0.0.1:50052"
if not defined SHEETS_ADDR set "SHEETS_ADDR=127.0.0.1:50053"
set "L_STATUS=!STATUS_WEB_ADDR:0.0.0.0=127.0.0.1!"
set "L_DISPATCHER=!DISPATCHER_ADDR:0.0.0.0=127.0.0.1!"
set "L_WA=!WA_ADDR:0.0.0.0=127.0.0.1!"
set "L_SHEETS=!SHEETS_ADDR:0.0.0.0=127.0.0.1!"
if not defined DISPATCHER_GATEWAY_URL set "DISPATCHER_GATEWAY_URL=http://!L_WA!"
if not defined DISPATCHER_LOGGER_URL set "DISPATCHER_LOGGER_URL=http://!L_SHEETS!"
if not defined STATUS_WEB_DISPATCHER_URL set "STATUS_WEB_DISPATCHER_URL=http://!L_DISPATCHER!"
if not defined STATUS_WEB_GATEWAY_URL set "STATUS_WEB_GATEWAY_URL=http://!L_WA!"
if not defined STATUS_WEB_LOGGER_URL set "STATUS_WEB_LOGGER_URL=http://!L_SHEETS!"

rem ---- before starting: configuration and credential files, then free ports ---------
rem "<service>.exe healthcheck" reads the configuration first (credentials.json,
rem sheets-credentials.json and config.json included) and exits 64 when it is bad; then
rem it asks a running instance, so 0 means one is already serving on that address.
call :preflight wa-gateway WA_ADDR || goto fail
call :preflight sheets-logger SHEETS_ADDR || goto fail
call :preflight dispatcher DISPATCHER_ADDR || goto fail
call :preflight status-web STATUS_WEB_ADDR || goto fail

rem ---- start: three in the background of this window, status-web in front ------------
start "" /b "!BIN!\wa-gateway.exe"
start "" /b "!BIN!\sheets-logger.exe"
start "" /b "!BIN!\dispatcher.exe"

rem status-web is started in front below; first wait (at most 60 s) for the other three.
set /a TRIES=0
:wait_three
set "ALL=1"
for %%s in (wa-gateway sheets-logger dispatcher) do (
  "!BIN!\%%s.exe" healthcheck >nul 2>nul
  if errorlevel 1 set "ALL=0"
)
if "!ALL!"=="1" goto three_ready
set /a TRIES+=1
if !TRIES! geq 60 (
  echo start.bat: a service did not become healthy within 60 s; see its lines above.
  call :stop_all
  set "CODE=1"
  goto fail
)
ping -n 2 127.0.0.1 >nul
goto wait_three
:three_ready

rem A helper window-less waiter announces the dashboard once status-web is healthy too.
start "" /b cmd /d /c call "%~f0" :announce
"!BIN!\status-web.exe"
set "CODE=!errorlevel!"

rem status-web stopped (Ctrl-C, or an error): stop the other three.
echo.
echo start.bat: status-web stopped ^(exit code !CODE!^); stopping the other services...
call :stop_all
echo start.bat: all four services are stopped.
rem 0: stopped by Ctrl-C; -1073741510 (STATUS_CONTROL_C_EXIT): the same, abruptly.
if "!CODE!"=="0" exit /b 0
if "!CODE!"=="-1073741510" exit /b 0
echo start.bat: status-web stopped by itself; see its lines above.
pause
exit /b !CODE!

rem ---- subroutines -------------------------------------------------------------------
:preflight
set "ADDR=!%~2!"
"!BIN!\%~1.exe" healthcheck >nul 2>"%TEMP%\abtrack-preflight.txt"
set "RC=!errorlevel!"
if "!RC!"=="64" (
  type "%TEMP%\abtrack-preflight.txt"
  del "%TEMP%\abtrack-preflight.txt" >nul 2>nul
  echo start.bat: %~1 cannot start with this configuration ^(the line above names the variable or file to fix^)
  set "CODE=64"
  exit /b 1
)
del "%TEMP%\abtrack-preflight.txt" >nul 2>nul
rem The port is what follows the last ":" of the address.
for %%a in ("%ADDR::=" "%") do set "PORT=%%~a"
if "!RC!"=="0" (
  echo start.bat: port !PORT! is already in use: AbTrack Notify's %~1 is already running on !ADDR! ^(close its window, or set %~2 to another address^)
  set "CODE=1"
  exit /b 1
)
rem %PORT%, not !PORT!: each side of a pipe runs in a new cmd without delayed expansion.
netstat -an -p tcp | findstr /r /c:":%PORT% .*LISTENING" >nul
if not errorlevel 1 (
  echo start.bat: port !PORT! is already in use by another program ^(%~1 needs !ADDR!; close that program, or set %~2 to another address^)
  set "CODE=1"
  exit /b 1
)
exit /b 0

:stop_all
rem Only the processes started from this folder's .exe files are stopped.
powershell -NoProfile -Command "Get-Process wa-gateway,sheets-logger,dispatcher,status-web -ErrorAction SilentlyContinue | Where-Object { $_.Path -and $_.Path.StartsWith('!BIN!\', [StringComparison]::OrdinalIgnoreCase) } | Stop-Process -Force" >nul 2>nul
if errorlevel 1 (
  for %%s in (%SERVICES%) do taskkill /f /im %%s.exe >nul 2>nul
)
exit /b 0

:announce
rem Runs in the background of the same window: waits (at most 60 s) for status-web,
rem then shows where the dashboard is and opens it.
set /a TRIES=0
:announce_wait
"%BIN%\status-web.exe" healthcheck >nul 2>nul
if not errorlevel 1 goto announce_now
set /a TRIES+=1
if !TRIES! geq 60 exit /b 1
ping -n 2 127.0.0.1 >nul
goto announce_wait
:announce_now
echo.
echo AbTrack Notify is running: all four services are healthy.
echo   Dashboard: http://%L_STATUS%/
if defined STATUS_WEB_PASSWORD echo   ^(log in with STATUS_WEB_PASSWORD^)
if /i "%WA_MODE%"=="dry-run" (
  echo   Dry run: nothing reaches WhatsApp; messages go to data\wa-gateway\dry-run.jsonl
) else (
  echo   To link WhatsApp, scan the QR code on the dashboard ^(it is also printed in this window^).
)
echo   To stop: close this window, or press Ctrl-C.
echo.
if not defined ABTRACK_NO_BROWSER start "" "http://%L_STATUS%/"
exit /b 0

:fail
echo.
echo start.bat: not started ^(exit code !CODE!^). See docs\configuration.md and the README's troubleshooting.
pause
exit /b !CODE!
