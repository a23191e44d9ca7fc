// libpng + libjpeg(-turbo). stdio must precede jpeglib.h.
#include <stdio.h>
#include <png.h>
#include <jpeglib.h>
