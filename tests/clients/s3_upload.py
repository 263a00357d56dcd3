"""Copies a local cara archive into an S3 bucket with boto3 (AWS's own client), as
`aws s3 sync` would: creates the bucket, then puts every file under the archive
directory at the same relative key below the prefix. Prints the number of files.

usage: s3_upload.py ENDPOINT BUCKET PREFIX ARCHIVE_DIR
"""

import os
import sys

import boto3


def main() -> None:
    endpoint, bucket, prefix, archive = sys.argv[1:5]
    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id="cara-test",
        aws_secret_access_key="cara-test",
        region_name="us-east-1",
    )
    s3.create_bucket(Bucket=bucket)
    uploaded = 0
    for directory, _, files in os.walk(archive):
        for name in files:
            path = os.path.join(directory, name)
            key = "/".join([prefix, os.path.relpath(path, archive).replace(os.sep, "/")])
            s3.upload_file(path, bucket, key)
            uploaded += 1
    print(uploaded)


if __name__ == "__main__":
    main()
