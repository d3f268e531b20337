@echo off
rem Starts AbTrack Notify in this window: double-click it.
rem Uses the .exe files next to this file (a release archive), else builds them with cargo,
rem then runs the launcher, abtrack-notify.exe: it starts the four services, shows the
rem dashboard's address once all four are healthy, starts a service again when it exits,
rem and stops all four on Ctrl-C or when this window is closed.
rem Usage: start.bat [--dry-run] [--debug]
rem Written for what every cmd runs the same way: no delayed expansion, no blocks.
setlocal EnableExtensions
chcp 65001 >nul
cd /d "%~dp0"
title AbTrack Notify

set "ABTRACK_PROFILE=release"
set "ABTRACK_ARGS="
:args
if "%~1"=="" goto args_done
if /i "%~1"=="--debug" goto arg_debug
if /i "%~1"=="--help" goto usage
if /i "%~1"=="-h" goto usage
set "ABTRACK_ARGS=%ABTRACK_ARGS% %1"
shift
goto args
:arg_debug
set "ABTRACK_PROFILE=debug"
shift
goto args
:usage
echo usage: start.bat [--dry-run] [--debug]
echo   --dry-run  nothing reaches WhatsApp: messages go to data\wa-gateway\dry-run.jsonl
echo   --debug    when building from source, build in debug mode
echo Environment: ABTRACK_BIN_DIR (folder of the five .exe files), ABTRACK_NO_BROWSER (do not open
echo the browser), and every service variable of docs\configuration.md.
exit /b 0
:args_done

rem ---- the binaries: given, next to this file, or built ---------------------------
if defined ABTRACK_BIN_DIR goto run
set "ABTRACK_BIN_DIR=%~dp0."
for %%b in (abtrack-notify wa-gateway sheets-logger dispatcher status-web) do if not exist "%~dp0%%b.exe" goto build
goto run

:build
if not exist "%~dp0Cargo.toml" goto no_binaries
where cargo >nul 2>nul
if errorlevel 1 goto no_cargo
echo start.bat: building the services (%ABTRACK_PROFILE%; the first build takes several minutes)...
set "ABTRACK_FLAG="
if "%ABTRACK_PROFILE%"=="release" set "ABTRACK_FLAG=--release"
cargo build %ABTRACK_FLAG% --locked -p abtrack-launcher -p abtrack-dispatcher -p abtrack-wa-gateway -p abtrack-sheets-logger -p abtrack-status-web
if errorlevel 1 goto build_failed
set "ABTRACK_BIN_DIR=%~dp0target\%ABTRACK_PROFILE%"

:run
if not exist "%ABTRACK_BIN_DIR%\abtrack-notify.exe" goto no_launcher
"%ABTRACK_BIN_DIR%\abtrack-notify.exe" %ABTRACK_ARGS%
set "ABTRACK_CODE=%errorlevel%"
rem 0 and 130: stopped by Ctrl-C; 129: the window closed.
if "%ABTRACK_CODE%"=="0" exit /b 0
if "%ABTRACK_CODE%"=="130" exit /b 0
if "%ABTRACK_CODE%"=="129" exit /b 0
goto failed

:no_binaries
echo start.bat: the five .exe files (abtrack-notify, wa-gateway, sheets-logger, dispatcher, status-web) are not next to start.bat. Unpack the whole release archive into one folder.
set "ABTRACK_CODE=69"
goto failed
:no_cargo
echo start.bat: the .exe files are not here and cargo is not installed.
echo Install Rust from https://rustup.rs (with the "Desktop development with C++" build tools), or download a release.
set "ABTRACK_CODE=69"
goto failed
:build_failed
echo start.bat: the build failed (see above); Rust 1.94 or later and the MSVC build tools are needed.
set "ABTRACK_CODE=1"
goto failed
:no_launcher
echo start.bat: ABTRACK_BIN_DIR=%ABTRACK_BIN_DIR% does not hold abtrack-notify.exe
set "ABTRACK_CODE=64"
goto failed

:failed
echo.
echo start.bat: AbTrack Notify stopped (exit code %ABTRACK_CODE%). See the lines above, docs\configuration.md and the README's troubleshooting.
pause
exit /b %ABTRACK_CODE%
