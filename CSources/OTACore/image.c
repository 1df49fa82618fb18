/*
 * image.c - the firmware image: opened once, read by offset, watched for changes.
 *
 * No mapping is ever made: if the file were truncated while mapped, touching the lost pages
 * would kill the whole agent with SIGBUS. pread(2) reports the same event as a short read.
 */

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ota_internal.h"

/* Block size for hashing; transfers use their own per-connection buffer. */
#define OTA_IMAGE_HASH_BLOCK 65536

/* Block size for copying when the kernel cannot copy file to file itself. */
#define OTA_IMAGE_COPY_BLOCK 65536

struct ota_image {
    int fd;
    struct stat opened;
    /* The file at the image path when it was opened: the same as `opened` unless the image
     * was copied into a private file, which then is what `fd` and `opened` describe. */
    dev_t path_device;
    ino_t path_inode;
};

static int
ota_image_check_kind(const char *path, const struct stat *info, char *detail,
                     size_t detail_size)
{
    if (S_ISDIR(info->st_mode)) {
        ota_detail_set(detail, detail_size, "%s is a directory, not an image file", path);
        return OTA_ERR_CONFIG;
    }
    if (!S_ISREG(info->st_mode)) {
        ota_detail_set(detail, detail_size, "%s is not a regular file", path);
        return OTA_ERR_CONFIG;
    }
    return OTA_OK;
}

ota_image *
ota_image_open(const char *path, int *status, char *detail, size_t detail_size)
{
    int ignored_status;
    status = status != NULL ? status : &ignored_status;
    if (path == NULL || path[0] == '\0') {
        *status = OTA_ERR_USAGE;
        ota_detail_set(detail, detail_size, "no image path");
        return NULL;
    }

    /* O_NONBLOCK keeps a FIFO from blocking the open; it is refused just below. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        *status = OTA_ERR_CONFIG;
        ota_detail_set(detail, detail_size, "cannot open %s: %s", path, strerror(errno));
        return NULL;
    }

    struct stat info;
    if (fstat(fd, &info) != 0) {
        *status = OTA_ERR_IO;
        ota_detail_set(detail, detail_size, "cannot stat %s: %s", path, strerror(errno));
        close(fd);
        return NULL;
    }
    *status = ota_image_check_kind(path, &info, detail, detail_size);
    if (*status != OTA_OK) {
        close(fd);
        return NULL;
    }

    ota_image *image = calloc(1, sizeof(*image));
    if (image == NULL) {
        *status = OTA_ERR_MEMORY;
        close(fd);
        return NULL;
    }
    image->fd = fd;
    image->opened = info;
    image->path_device = info.st_dev;
    image->path_inode = info.st_ino;
    return image;
}

/* Copies `size` bytes from `from` to `to` (both at offset 0): by the kernel, sharing blocks
 * where the filesystem can, else through a bounded buffer. */
static int
ota_image_copy(int from, int to, uint64_t size, char *detail, size_t detail_size)
{
    loff_t in = 0;
    loff_t out = 0;
    while ((uint64_t)in < size) {
        ssize_t copied = copy_file_range(from, &in, to, &out, (size_t)(size - (uint64_t)in), 0);
        if (copied > 0) {
            continue;
        }
        if (copied < 0 && errno == EINTR) {
            continue;
        }
        if (copied == 0) {
            ota_detail_set(detail, detail_size, "the image shrank while being copied");
            return OTA_ERR_CHANGED;
        }
        if (errno != EXDEV && errno != ENOSYS && errno != EINVAL && errno != EOPNOTSUPP) {
            ota_detail_set(detail, detail_size, "copying the image: %s", strerror(errno));
            return OTA_ERR_IO;
        }
        break; /* No kernel copy between these files: by hand from where it stopped. */
    }

    uint8_t *block = (uint64_t)in < size ? malloc(OTA_IMAGE_COPY_BLOCK) : NULL;
    if ((uint64_t)in < size && block == NULL) {
        return OTA_ERR_MEMORY;
    }
    int status = OTA_OK;
    while (status == OTA_OK && (uint64_t)in < size) {
        size_t length = size - (uint64_t)in < OTA_IMAGE_COPY_BLOCK ? (size_t)(size - (uint64_t)in)
                                                                   : OTA_IMAGE_COPY_BLOCK;
        ssize_t got = pread(from, block, length, in);
        if (got < 0 && errno == EINTR) {
            continue;
        }
        if (got <= 0) {
            ota_detail_set(detail, detail_size, "copying the image: %s",
                           got == 0 ? "it shrank" : strerror(errno));
            status = got == 0 ? OTA_ERR_CHANGED : OTA_ERR_IO;
            break;
        }
        for (ssize_t written = 0; status == OTA_OK && written < got;) {
            ssize_t put = pwrite(to, block + written, (size_t)(got - written), in + written);
            if (put < 0 && errno == EINTR) {
                continue;
            }
            if (put <= 0) {
                ota_detail_set(detail, detail_size, "copying the image: %s", strerror(errno));
                status = OTA_ERR_IO;
            } else {
                written += put;
            }
        }
        in += got;
    }
    free(block);
    return status;
}

int
ota_image_make_private(ota_image *image, const char *directory, char *detail,
                       size_t detail_size)
{
    if (image == NULL || directory == NULL) {
        ota_detail_set(detail, detail_size, "no image or no directory");
        return OTA_ERR_USAGE;
    }

    /* Unnamed and only ours: no other process can open it by a path, and it vanishes with
     * the agent, however the agent ends. */
    int copy = open(directory, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (copy < 0) {
        ota_detail_set(detail, detail_size, "cannot create a private file in %s: %s", directory,
                       strerror(errno));
        return OTA_ERR_CONFIG;
    }

    int status = ota_image_copy(image->fd, copy, ota_image_size(image), detail, detail_size);
    /* A write to the original during the copy could have mixed old and new bytes. */
    if (status == OTA_OK && ota_image_check_unchanged(image) != OTA_OK) {
        ota_detail_set(detail, detail_size, "the image changed while being copied");
        status = OTA_ERR_CHANGED;
    }
    struct stat info;
    if (status == OTA_OK && fstat(copy, &info) != 0) {
        ota_detail_set(detail, detail_size, "cannot stat the copy: %s", strerror(errno));
        status = OTA_ERR_IO;
    }
    if (status != OTA_OK) {
        close(copy);
        return status;
    }

    close(image->fd);
    image->fd = copy;
    image->opened = info;
    return OTA_OK;
}

uint64_t
ota_image_size(const ota_image *image)
{
    return image == NULL ? 0 : (uint64_t)image->opened.st_size;
}

int
ota_image_fd(const ota_image *image)
{
    return image == NULL ? -1 : image->fd;
}

static int
ota_timespec_equal(struct timespec first, struct timespec second)
{
    return first.tv_sec == second.tv_sec && first.tv_nsec == second.tv_nsec;
}

int
ota_image_check_unchanged(const ota_image *image)
{
    if (image == NULL) {
        return OTA_ERR_USAGE;
    }

    struct stat now;
    if (fstat(image->fd, &now) != 0) {
        return OTA_ERR_IO;
    }
    /* A file replaced (renamed over) or deleted at its path leaves our descriptor on the old
     * inode, whose bytes are still the ones hashed at start: that is no change to what we
     * send. Only a write to that inode is, and a write moves its size or modification time.
     * (The change time also moves on rename, unlink and chmod, so it is not compared.) */
    if (now.st_size != image->opened.st_size ||
        !ota_timespec_equal(now.st_mtim, image->opened.st_mtim)) {
        return OTA_ERR_CHANGED;
    }
    return OTA_OK;
}

int
ota_image_path_names_image(const ota_image *image, const char *path)
{
    struct stat named;
    if (image == NULL || path == NULL || stat(path, &named) != 0) {
        return 0;
    }
    return named.st_dev == image->path_device && named.st_ino == image->path_inode;
}

/* Reads exactly `length` bytes at `offset`; a short file is reported as a change. */
int
ota_image_read_at(const ota_image *image, uint8_t *buffer, size_t length, uint64_t offset)
{
    size_t filled = 0;
    while (filled < length) {
        ssize_t got = pread(image->fd, buffer + filled, length - filled,
                            (off_t)(offset + filled));
        if (got < 0 && errno == EINTR) {
            continue;
        }
        if (got < 0) {
            return OTA_ERR_IO;
        }
        if (got == 0) {
            return OTA_ERR_CHANGED;
        }
        filled += (size_t)got;
    }
    return OTA_OK;
}

int
ota_image_sha256(const ota_image *image, uint8_t digest[32])
{
    if (image == NULL || digest == NULL) {
        return OTA_ERR_USAGE;
    }

    uint8_t *block = malloc(OTA_IMAGE_HASH_BLOCK);
    ota_sha256_ctx *context = ota_sha256_new();
    int status = block != NULL && context != NULL ? OTA_OK : OTA_ERR_MEMORY;

    uint64_t size = ota_image_size(image);
    for (uint64_t offset = 0; status == OTA_OK && offset < size;) {
        size_t length = size - offset < OTA_IMAGE_HASH_BLOCK ? (size_t)(size - offset)
                                                            : OTA_IMAGE_HASH_BLOCK;
        status = ota_image_read_at(image, block, length, offset);
        if (status == OTA_OK) {
            status = ota_sha256_update(context, block, length);
        }
        offset += length;
    }
    if (status == OTA_OK) {
        status = ota_sha256_final(context, digest);
    }

    ota_sha256_free(context);
    free(block);
    return status;
}

static int
ota_image_read_for_check(void *context, uint64_t offset, uint8_t *buffer, size_t length)
{
    return ota_image_read_at(context, buffer, length, offset);
}

int
ota_image_check_app_format(const ota_image *image, ota_app_image_info *info, char *detail,
                           size_t detail_size)
{
    if (image == NULL) {
        if (info != NULL) {
            memset(info, 0, sizeof(*info));
        }
        ota_detail_set(detail, detail_size, "no image");
        return OTA_ERR_USAGE;
    }
    /* The read function's context is not const; ota_image_read_at never writes the image. */
    return ota_app_image_check(ota_image_read_for_check, (void *)image, ota_image_size(image),
                               info, detail, detail_size);
}

void
ota_image_free(ota_image *image)
{
    if (image == NULL) {
        return;
    }
    close(image->fd);
    free(image);
}
