fn main() {
    print!("{}", image_scanner::crd::ContainerImageScan::crd_yaml());
}
